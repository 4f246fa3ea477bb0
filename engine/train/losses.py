"""Regularisers on the rendering weights along each ray."""

from __future__ import annotations

import torch

from engine.field.renderer import Samples


def distortion(samples: Samples, weights: torch.Tensor) -> torch.Tensor:
    """Mip-NeRF 360's distortion loss, mean over the R rays: for each ray,
    sum_ij w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 d_i, with s a sample's position along
    the ray and d its interval, both in final-grid voxels. It is small when a ray's weight
    sits in a thin layer, so it sharpens what rays see; density hidden behind the first
    surface gets no weight and so no gradient from it (on the default scene it did not
    help the meshes: docs/segmentation_measurements.md, "Meshes against the true surfaces").

    samples: M samples sorted by ray and by position within a ray; weights [M].
    The double sum is computed in O(M) from running sums along each ray:
    sum_ij w_i w_j |s_i - s_j| = 2 sum_i w_i (s_i W_i - (ws)_i), where W_i and (ws)_i
    are the sums of w and w*s over the ray's samples before i."""
    R, S = samples.shape
    flat = samples.flat_index
    s = samples.position
    dense_w = weights.new_zeros(R * S).index_put((flat,), weights).reshape(R, S)
    dense_ws = weights.new_zeros(R * S).index_put((flat,), weights * s).reshape(R, S)
    before_w = (dense_w.cumsum(1) - dense_w).reshape(-1)[flat]          # [M]
    before_ws = (dense_ws.cumsum(1) - dense_ws).reshape(-1)[flat]       # [M]
    pairs = 2 * (weights * (s * before_w - before_ws)).sum()
    within = (weights.square() * samples.interval).sum() / 3
    return (pairs + within) / R
