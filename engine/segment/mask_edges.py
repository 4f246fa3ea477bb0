"""2D masks whose edges follow the image's.

A segment's 2D mask is its share of the rendered scene, thresholded. The field's surfaces
are soft (their weight spreads over a few voxels along a ray), so where two objects meet
the share changes over a few pixels that need not lie on the edge the photograph shows:
nearly every wrong pixel of the default scene's benchmark is within 2 px of a boundary
between two objects (docs/segmentation.md, "The field's ceiling").

Before the threshold the share is guided-filtered (He et al., "Guided Image Filtering",
2010; kornia's implementation) with an image of the same camera as the guide: within
each window the share becomes a linear function of the colour, so its step moves onto
the colour edge nearby, and it stays flat where the colour is. The guide is the
photograph when the camera is a dataset view (its edges are the true ones) and the
field's own render of the scene otherwise. Only the 2D masks change: the segment's
voxels, its masked renders and its mesh do not.
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.filters import guided_blur

from engine.config import SegmentConfig
from engine.errors import IsrfError


@torch.no_grad()
def snap_to_image(share: torch.Tensor, image: torch.Tensor | None, radius: int, eps: float
                  ) -> torch.Tensor:
    """share [H, W] in [0, 1], image [H, W, 3] float in [0, 1] (same camera) -> the share
    guided-filtered with the image [H, W] (unchanged, and the image unused, when radius is 0).

    radius: window radius in pixels; eps: regulariser in squared colour units (smaller
    follows weaker colour edges)."""
    if radius == 0:
        return share
    if image is None:
        raise IsrfError("mask edges: a guide image is needed when mask_edge_radius > 0")
    if image.shape[:2] != share.shape:
        raise IsrfError(f"mask edges: the guide image is {tuple(image.shape[:2])}, "
                        f"the mask {tuple(share.shape)}")
    guide = image.to(share.device, torch.float32).permute(2, 0, 1)[None]   # [1, 3, H, W]
    return guided_blur(guide, share.float()[None, None], 2 * radius + 1, eps)[0, 0]


def visible_mask(share: torch.Tensor, image: torch.Tensor | None, params: SegmentConfig
                 ) -> np.ndarray:
    """A segment's 2D mask [H, W] bool from its visible share [H, W] and the camera's image
    [H, W, 3]: snapped to the image (`mask_edge_radius`, `mask_edge_eps`), thresholded at
    `mask_opacity`. The image may be None only when the radius is 0."""
    share = snap_to_image(share, image, params.mask_edge_radius, params.mask_edge_eps)
    return (share > params.mask_opacity).cpu().numpy()
