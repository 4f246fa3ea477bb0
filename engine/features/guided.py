"""Edge-aware upsampling of feature maps, with the image as the guide.

A backbone's maps are coarse (EfficientNet's stride-8 grid, DINO's 8-px patches) and its
deeper stages see far beyond a pixel, so where two objects meet their features blend
over several pixels. Distilled into 3D, that blend becomes voxels of one object with
features of its neighbour, and segments leak across contacts (docs/segmentation.md).

The maps are upsampled (bilinear) to the image's size and then guided-filtered
(He et al., "Guided Image Filtering", 2010; kornia's implementation) with the RGB image
as the guide: within each window the features become a linear function of the colour,
so a feature edge moves onto the colour edge nearby. The filter is linear in the
features, so it commutes with the PCA projection: it runs on the D projected channels
(cheaper than the backbone's hundreds), and the result is L2-normalised again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import guided_blur


def guided_map_size(image_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(H', W') of the guided maps: the image's size, scaled down so the long side is at
    most `max_side` (memory: maps are float16 [N, H', W', D])."""
    height, width = image_size
    scale = min(1.0, max_side / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def guided_radius_pixels(radius: float, map_size: tuple[int, int], size: tuple[int, int]) -> int:
    """The filter's window radius in pixels of the guided maps, from `radius` in pixels of
    the backbone's map (so one setting suits every image and input size); at least 1."""
    scale = max(size) / max(map_size)
    return max(1, int(round(radius * scale)))


@torch.no_grad()
def guided_upsample(maps: torch.Tensor, images: torch.Tensor, size: tuple[int, int],
                    radius: int, eps: float) -> torch.Tensor:
    """Upsample feature maps to `size` with their images as guides.

    maps [B, h, w, D] (any float dtype), images [B, H, W, 3] uint8 (the dataset's, on the
    background colour) -> [B, H', W', D] float32, L2-normalised per pixel.
    radius: window radius in output pixels; eps: regulariser in squared colour units
    (colours in [0, 1]): smaller follows weaker colour edges."""
    features = maps.permute(0, 3, 1, 2).float()
    features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    guide = images.permute(0, 3, 1, 2).float() / 255
    if guide.shape[-2:] != size:
        guide = F.interpolate(guide, size=size, mode="bilinear", antialias=True, align_corners=False)
    filtered = guided_blur(guide, features, 2 * radius + 1, eps)
    return F.normalize(filtered, dim=1).permute(0, 2, 3, 1)
