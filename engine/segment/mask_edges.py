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
field's own render of the scene otherwise.

After the threshold, the mask may take pixels just outside it whose colours belong to
it (`add_by_colour`: GrabCut, Rother et al. 2004, OpenCV's implementation). The segment's
voxels miss what the features saw as something else (the shaded inner wall of the
torus, the table's side faces, a thin rim below the threshold); the image still shows
those pixels in the object's colours, next to it. Pixels are only added, never taken
away: GrabCut's colour models are global, so on its own it would drop an object's pixels
that share the background's colour (the white squares of the checker cube against the
white backdrop).

Only the 2D masks change: the segment's voxels, its masked renders and its mesh do not.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from kornia.filters import guided_blur
from scipy import ndimage

from engine.config import SegmentConfig
from engine.errors import IsrfError


def _check_image(image: torch.Tensor | None, shape: tuple, step: str, setting: str) -> None:
    """The image a 2D step needs: present, and the mask's size."""
    if image is None:
        raise IsrfError(f"mask {step}: a guide image is needed when {setting} > 0")
    if tuple(image.shape[:2]) != tuple(shape):
        raise IsrfError(f"mask {step}: the guide image is {tuple(image.shape[:2])}, "
                        f"the mask {tuple(shape)}")


@torch.no_grad()
def snap_to_image(share: torch.Tensor, image: torch.Tensor | None, radius: int, eps: float
                  ) -> torch.Tensor:
    """share [H, W] in [0, 1], image [H, W, 3] float in [0, 1] (same camera) -> the share
    guided-filtered with the image [H, W] (unchanged, and the image unused, when radius is 0).

    radius: window radius in pixels; eps: regulariser in squared colour units (smaller
    follows weaker colour edges)."""
    if radius == 0:
        return share
    _check_image(image, share.shape, "edges", "mask_edge_radius")
    guide = image.to(share.device, torch.float32).permute(2, 0, 1)[None]   # [1, 3, H, W]
    return guided_blur(guide, share.float()[None, None], 2 * radius + 1, eps)[0, 0]


MIN_GRABCUT_PIXELS = 10   # GrabCut fits 5-component colour models to each side


def add_by_colour(mask: np.ndarray, image: torch.Tensor | None, band: int) -> np.ndarray:
    """mask [H, W] bool, image [H, W, 3] float in [0, 1] (same camera) -> the mask plus the
    pixels within `band` px outside it that GrabCut gives to it (one iteration; its colour
    models start from the mask, the pixels further than `band` px inside it fixed as the
    object and those further than `band` px outside it fixed as not). Unchanged when band
    is 0, or when the mask or what is outside it is too small to model. Deterministic."""
    if band == 0:
        return mask
    _check_image(image, mask.shape, "colours", "mask_grabcut_band")
    if min(mask.sum(), (~mask).sum()) < MIN_GRABCUT_PIXELS:
        return mask
    labels = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    labels[ndimage.binary_dilation(mask, iterations=band)] = cv2.GC_PR_BGD
    labels[mask] = cv2.GC_PR_FGD
    labels[ndimage.binary_erosion(mask, iterations=band)] = cv2.GC_FGD
    pixels = np.ascontiguousarray((image.clamp(0, 1) * 255).round().byte().cpu().numpy())
    cv2.setRNGSeed(0)   # its k-means starts from random centres
    models = np.zeros((1, 65)), np.zeros((1, 65))   # OpenCV's GMM state: 5 x (1 + 3 + 9)
    cv2.grabCut(pixels, labels, None, *models, 1, cv2.GC_INIT_WITH_MASK)
    return mask | (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def needs_image(params: SegmentConfig) -> bool:
    """Whether `visible_mask` with these parameters reads the camera's image."""
    return params.mask_edge_radius > 0 or params.mask_grabcut_band > 0


def visible_mask(share: torch.Tensor, image: torch.Tensor | None, params: SegmentConfig
                 ) -> np.ndarray:
    """A segment's 2D mask [H, W] bool from its visible share [H, W] and the camera's image
    [H, W, 3]: snapped to the image (`mask_edge_radius`, `mask_edge_eps`), thresholded at
    `mask_opacity`, then grown by colour (`mask_grabcut_band`); both lengths are fractions
    of the image's long side, so a mask of the same view at another size is the same. The
    image may be None only when both are off."""
    share = snap_to_image(share, image, in_pixels(params.mask_edge_radius, share.shape),
                          params.mask_edge_eps)
    mask = (share > params.mask_opacity).cpu().numpy()
    return add_by_colour(mask, image, in_pixels(params.mask_grabcut_band, mask.shape))


def in_pixels(fraction: float, shape: tuple[int, ...]) -> int:
    """A length given as a fraction of an image's long side -> whole pixels of an image
    of `shape` [H, W]; at least 1 when the fraction is not 0 (0 stays off)."""
    return max(1, round(fraction * max(shape[:2]))) if fraction > 0 else 0
