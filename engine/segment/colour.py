"""The field's colour as a few extra feature dimensions (beyond ISRF).

ISRF compares voxels by their distilled features alone. Those come from a CNN or ViT at
a fraction of the image's resolution, so a small patch of one object framed by another
takes the framing object's features: the table seen through the torus's hole looks like
torus to them, and a red stroke painted there cannot take it back. The radiance field's
colour is sharp at the voxel's own scale and tells the two apart.

So a voxel's (and a stroke pixel's) feature becomes [f, w * (rgb - 0.5)] renormalised:
f the unit-length distilled feature [D], rgb the field's colour [3] in [0, 1], w the
`colour_weight` setting. Squared distances between such vectors are about |f - f'|^2 +
w^2 |rgb - rgb'|^2: at w = 0.3 two clearly different colours (|rgb - rgb'|^2 about 0.5)
add about 0.05, a third of `seed_distance`, so colour mostly decides where the features
nearly tie (an object of several colours keeps a stroke centre for each); black against
white adds 0.27.
docs/segmentation.md, "Colour", has the measurements behind the weight.

Voxel colours are the colour branch's at the voxel's centre, seen along one direction
for every voxel (the cameras' mean viewing direction): the colour a stroke pixel renders
depends a little on its camera's direction, the voxels' on this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.cameras import Cameras
from engine.field.radiance_field import RadianceField

CHUNK = 1 << 16   # voxels whose colour is evaluated at once (the MLP's hidden layers)
COLOUR_DIMS = 3


def with_colour(features: torch.Tensor, rgb: torch.Tensor | None, weight: float
                ) -> torch.Tensor:
    """features [N, D] (any length), rgb [N, 3] in [0, 1] -> [N, D + 3] unit length
    (when weight is 0: the features [N, D] normalised, and rgb may be None)."""
    unit = F.normalize(features.float(), dim=-1)
    if weight == 0:
        return unit
    if rgb is None:
        raise ValueError("with_colour: a colour_weight above 0 needs the colours")
    return F.normalize(torch.cat([unit, weight * (rgb.float() - 0.5)], dim=-1), dim=-1)


def viewing_direction(cameras: Cameras) -> torch.Tensor:
    """The cameras' mean viewing direction [3] (world, unit length). Cameras all around
    a scene can cancel out: then the first camera's direction."""
    forward = cameras.c2w[:, :3, 2]                                          # [N, 3]
    mean = forward.mean(0)
    return F.normalize(mean if mean.norm() > 0.1 else forward[0], dim=0)


@torch.no_grad()
def voxel_colours(field: RadianceField, normalised: torch.Tensor, direction: torch.Tensor
                  ) -> torch.Tensor:
    """The field's colour [M, 3] at grid points `normalised` [M, 3] (in [-1, 1], the
    feature field's coordinates) seen along the world `direction` [3]."""
    points = field.box_min + (normalised + 1) / 2 * (field.box_max - field.box_min)
    colours = []
    for start in range(0, len(points), CHUNK):
        chunk = points[start:start + CHUNK]
        ray_index = torch.zeros(len(chunk), dtype=torch.long, device=chunk.device)
        colours.append(field.rgb(chunk, direction.to(chunk)[None], ray_index))
    return torch.cat(colours) if colours else points.new_zeros(0, COLOUR_DIMS)
