"""k-means of a stroke's features with faiss (CPU; strokes hold at most ~10^5 pixels)."""

from __future__ import annotations

import faiss
import numpy as np
import torch

ITERATIONS = 20
SEED = 1234  # fixed: replaying a session's strokes gives the same centres
POINTS_PER_CENTRE = 256
"""faiss trains on at most this many points per centre (its own default), sampled with
SEED: an 18k-pixel stroke clusters in 7 ms instead of 46 ms on 2 CPU cores, which
matters within a GPU's stroke budget of tens of milliseconds."""


def cluster_centres(features: torch.Tensor, k: int) -> torch.Tensor:
    """features [P, D] -> k-means centres [min(k, P), D] (float32, on the input's device).

    With no more than k distinct pixels, the pixels themselves are the centres."""
    points = np.ascontiguousarray(features.detach().float().cpu().numpy())
    few = _distinct_rows_if_at_most(points, k)
    if few is not None:
        return torch.from_numpy(few).to(features.device)
    kmeans = faiss.Kmeans(points.shape[1], k, niter=ITERATIONS, seed=SEED,
                          min_points_per_centroid=1, max_points_per_centroid=POINTS_PER_CENTRE)
    kmeans.train(points)
    return torch.from_numpy(kmeans.centroids.copy()).to(features.device)


def _distinct_rows_if_at_most(points: np.ndarray, k: int) -> np.ndarray | None:
    """The distinct rows of points [P, D] when there are at most k of them, else None.
    The first few rows nearly always settle it; sorting all of an 18k-pixel stroke's
    rows takes 40 ms."""
    if len(np.unique(points[:4 * (k + 1)], axis=0)) > k:
        return None
    distinct = np.unique(points, axis=0)
    return distinct if len(distinct) <= k else None
