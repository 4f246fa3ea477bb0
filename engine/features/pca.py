"""PCA fitted by streaming: accumulate the mean and the covariance chunk by chunk (float64),
then take the top eigenvectors. Exact, and never holds all vectors in one float matrix."""

from __future__ import annotations

import torch


class StreamingPca:
    def __init__(self, channels: int):
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.gram = torch.zeros(channels, channels, dtype=torch.float64)

    def add(self, vectors: torch.Tensor) -> None:
        """Accumulate vectors [M, C]."""
        x = vectors.detach().to("cpu", torch.float64)
        self.count += len(x)
        self.sum += x.sum(0)
        self.gram += x.T @ x

    def fit(self, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> mean [C] and components [C, dims] (float32), by decreasing variance.

        Each component's sign is fixed (its largest entry positive) so that the same data
        always gives the same projection."""
        if self.count < 2:
            raise ValueError("PCA needs at least two vectors")
        if dims > len(self.sum):
            raise ValueError(f"cannot keep {dims} dimensions of {len(self.sum)}-channel features")
        mean = self.sum / self.count
        covariance = self.gram / self.count - torch.outer(mean, mean)
        _, vectors = torch.linalg.eigh(covariance)             # ascending eigenvalues
        components = vectors[:, -dims:].flip(1)
        largest = components.abs().argmax(0)
        signs = torch.sign(components[largest, torch.arange(dims)])
        return mean.float(), (components * signs).float()


def project(vectors: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """[..., C] -> [..., D]: centred, projected, L2-normalised per vector."""
    out = (vectors.float() - mean) @ components
    return torch.nn.functional.normalize(out, dim=-1)
