"""Image-quality metrics between a rendering and its ground truth (both [H, W, 3] in [0, 1])."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio (dB) of a mean squared error on [0, 1] images."""
    return -10.0 * math.log10(max(mse, 1e-10))


def image_metrics(rendered: np.ndarray, target: np.ndarray) -> dict[str, float]:
    mse = float(np.mean((rendered - target) ** 2))
    ssim = structural_similarity(target, rendered, channel_axis=2, data_range=1.0)
    return {"psnr": psnr(mse), "ssim": float(ssim)}
