"""What a viewport shows of a render (`Scene.render_camera`): 8-bit RGBA pictures.

- `colour`: the scene's colour, opaque;
- `overlay`: the colour with the segment's visible share tinted (a viewport's selection);
- `segment`: the segment alone, alpha its opacity (0 everywhere else).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Mode = Literal["colour", "overlay", "segment"]
OVERLAY_TINT = (0.15, 0.85, 0.3)
OVERLAY_STRENGTH = 0.5
"""How much of a selected pixel's colour the tint replaces."""


def picture(render: dict[str, torch.Tensor], mode: Mode,
            tint: tuple[float, float, float] = OVERLAY_TINT) -> np.ndarray:
    """An RGBA uint8 picture [H, W, 4] of a render in one of the modes above."""
    if mode != "colour" and "visible" not in render:
        raise ValueError(f"mode {mode!r} needs a render with a segment")
    if mode == "segment":
        rgb, alpha = render["segment_rgb"], render["segment_opacity"]
    else:
        rgb = render["rgb"]
        alpha = torch.ones_like(render["opacity"])
        if mode == "overlay":
            share = (render["visible"].clamp(0, 1) * OVERLAY_STRENGTH)[..., None]
            rgb = rgb * (1 - share) + torch.tensor(tint, device=rgb.device) * share
    rgba = torch.cat([rgb, alpha[..., None]], -1).clamp(0, 1)
    return (rgba * 255).round().byte().cpu().numpy()
