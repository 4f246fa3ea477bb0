"""A segment's mask: its voxels from its positive and negative sets, and its 2D masks.

A voxel in both sets goes to the side whose stroke features it is closer to: a red stroke
on the table next to a cup removes the table, not the cup's foot, even when the table's
region reached under it.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.config import SegmentConfig
from engine.errors import IsrfError
from engine.segment.history import SegmentState
from engine.segment.mask_edges import needs_image, visible_mask


def closer_to(features: torch.Tensor, voxels: torch.Tensor, these: torch.Tensor,
              those: torch.Tensor) -> torch.Tensor:
    """The `voxels` [M] bool whose `features` [M, D] (unit rows) are at least as close to
    centres `these` [K1, D] as to `those` [K2, D] (False elsewhere; all of `voxels` when
    `those` is empty)."""
    result = torch.zeros_like(voxels)
    rows = torch.nonzero(voxels)[:, 0]
    if len(rows) == 0 or len(these) == 0:
        return result
    chosen = features[rows].float()
    near_these = (2 - 2 * chosen @ these.T).amin(1)
    near_those = (2 - 2 * chosen @ those.T).amin(1) if len(those) else torch.full_like(near_these, 5)
    result[rows[near_these <= near_those]] = True
    return result


def voxel_mask(state: SegmentState, features: torch.Tensor) -> torch.Tensor:
    """The segment's voxels [M] bool: positive minus negative, overlaps decided by the
    stroke features (module docstring)."""
    overlap = state.positive & state.negative
    removed = (state.negative & ~overlap) | closer_to(
        features, overlap, state.negative_centres, state.positive_centres)
    return state.positive & ~removed


def image_mask(rendered: dict[str, torch.Tensor], params: SegmentConfig, occlusion: bool = True,
               image: torch.Tensor | None = None, photo_assist: bool = False) -> np.ndarray:
    """A 2D mask [H, W] bool from a render of the segment (`render_segment_image`).

    occlusion: where the segment is what the camera sees (its share of the rendered scene
    > mask_opacity); else where the segment alone renders opaque. Either is the 3D
    selection seen from the camera, the mask its mesh and every new view show.
    photo_assist (occlusion only): 2D post-processing of the share with an image of the
    camera, `mask_edge_radius` and `mask_grabcut_band` (engine/segment/mask_edges.py):
    `image` is the camera's photograph ([H, W, 3] float in [0, 1]) when there is one, else
    the render's own colour (scene_rgb)."""
    if not occlusion:   # occluded parts are in this mask: the image shows none of their edges
        return (rendered["opacity"] > params.mask_opacity).cpu().numpy()
    if not photo_assist:
        return (rendered["visible"] > params.mask_opacity).cpu().numpy()
    if image is None and needs_image(params):
        if "scene_rgb" not in rendered:
            raise IsrfError("photo-assisted masks follow an image: give the camera's "
                            "photograph, or a render made with scene_rgb=True")
        image = rendered["scene_rgb"]
    return visible_mask(rendered["visible"], image, params)
