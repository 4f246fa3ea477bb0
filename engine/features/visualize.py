"""Feature images as colour: a 3-component PCA shared by every picture that is compared, so
the same feature gets the same colour in rendered and 2D pictures and across views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.features.pca import StreamingPca


@dataclass
class FeatureColoring:
    mean: torch.Tensor          # [D]
    components: torch.Tensor    # [D, 3]
    low: torch.Tensor           # [3] 1st percentile of each projection
    high: torch.Tensor          # [3] 99th percentile

    @classmethod
    def fit(cls, vectors: torch.Tensor, max_vectors: int = 200_000, seed: int = 0) -> "FeatureColoring":
        """Fit on feature vectors [M, D] (a random subset of at most `max_vectors`)."""
        vectors = vectors.float().cpu()
        if len(vectors) > max_vectors:
            generator = torch.Generator().manual_seed(seed)
            vectors = vectors[torch.randperm(len(vectors), generator=generator)[:max_vectors]]
        pca = StreamingPca(vectors.shape[1])
        pca.add(vectors)
        mean, components = pca.fit(3)
        projected = (vectors - mean) @ components
        low, high = torch.quantile(projected, torch.tensor([0.01, 0.99]), dim=0)
        return cls(mean, components, low, high)

    def to_rgb(self, features: torch.Tensor) -> np.ndarray:
        """[H, W, D] -> uint8 [H, W, 3]."""
        projected = (features.float().cpu() - self.mean) @ self.components
        unit = ((projected - self.low) / (self.high - self.low).clamp_min(1e-6)).clamp(0, 1)
        return (unit * 255).round().to(torch.uint8).numpy()
