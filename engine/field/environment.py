"""A learnt environment: the colour of light from far away, by ray direction.

For captures whose background is not a backdrop colour (a room, a sky, a garden seen from
a table scene): rays that leave the scene box unabsorbed take the environment's colour in
their direction, the way Blender's world texture shows behind a scene. Without it the
field has to explain the room with density inside the box: a shell on the box's faces
that hides the scene from the other side. A background at a finite distance is only
approximated (it is treated as infinitely far: no parallax between cameras); for a scene
box whose cameras stand well outside it, the walls' parallax is a few pixels.

The texture is equirectangular in world coordinates, +Z up (the Blender / transforms.json
convention): columns are azimuth atan2(y, x) from -pi to pi (wrapping around), rows
elevation from +90 (top) to -90 degrees. Stored as logits; the colour is their sigmoid.

Coarse to fine, like the grids: it starts `2**upscales` times narrower than its final
width and doubles at each of the field's upscales. A fine texture starting out would
learn slowly (each texel is seen by few rays of a batch; measured on the room scene:
256 texels wide, still dark after 200 steps), and the field's density would paint the
room onto the box's faces before the environment could learn it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


INIT_LOGIT = -3.0  # sigmoid: 0.047


class Environment(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        # Starts near black, below every colour the field starts with (0.5): where a ray
        # is darker behind a voxel than the voxel's colour, density there gets a gradient.
        # Were the environment grey, a ray's colour would not change as density grows, and
        # no density would grow (room scene: an empty box, 13 dB).
        self.texture = nn.Parameter(torch.full((1, 3, max(1, width // 2), width), INIT_LOGIT))

    @property
    def width(self) -> int:
        return self.texture.shape[-1]

    def upscale(self, width: int) -> None:
        """Resample the texture at `width` texels around (a new parameter: rebuild the
        optimiser)."""
        with torch.no_grad():
            finer = F.interpolate(self.texture, size=(max(1, width // 2), width),
                                  mode="bilinear", align_corners=False)
        self.texture = nn.Parameter(finer)

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """Unit world directions [R, 3] -> colour [R, 3] in (0, 1)."""
        width = self.width
        # One column of each side copied around, so that azimuth +-pi interpolates
        # across the seam instead of clamping at it.
        wrapped = torch.cat([self.texture[..., -1:], self.texture, self.texture[..., :1]], -1)
        azimuth = torch.atan2(dirs[:, 1], dirs[:, 0]) / math.pi * width / (width + 2)   # [-1, 1]
        elevation = torch.asin(dirs[:, 2].clamp(-1, 1)) / (math.pi / 2)                 # [-1, 1]
        grid = torch.stack([azimuth, -elevation], -1)[None, None]                      # [1, 1, R, 2]
        logits = F.grid_sample(wrapped, grid, mode="bilinear", padding_mode="border",
                               align_corners=False)                                    # [1, 3, 1, R]
        return torch.sigmoid(logits[0, :, 0].t())
