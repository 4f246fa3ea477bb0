"""k-means of a stroke's features with faiss (CPU; strokes hold at most ~10^5 pixels)."""

from __future__ import annotations

import faiss
import numpy as np
import torch

ITERATIONS = 20
SEED = 1234  # fixed: replaying a session's strokes gives the same centres


def cluster_centres(features: torch.Tensor, k: int) -> torch.Tensor:
    """features [P, D] -> k-means centres [min(k, P), D] (float32, on the input's device).

    With no more than k distinct pixels, the pixels themselves are the centres."""
    points = np.ascontiguousarray(features.detach().float().cpu().numpy())
    unique = np.unique(points, axis=0)
    if len(unique) <= k:
        return torch.from_numpy(unique).to(features.device)
    kmeans = faiss.Kmeans(points.shape[1], k, niter=ITERATIONS, seed=SEED,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    kmeans.train(points)
    return torch.from_numpy(kmeans.centroids.copy()).to(features.device)
