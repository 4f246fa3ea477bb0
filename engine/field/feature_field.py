"""The distilled semantic feature field: a low-rank (VM) grid of D channels on the
radiance field's box, plus one learnt background feature for rays that hit nothing.

Memory is what makes this usable: a dense float32 64 x 320^3 grid (ISRF's) is 8.4 GB, with
Adam's moments three times that; this grid at rank 16 is 3 x 16 x 320^2 floats (~20 MB).
Features are rendered with the colour's ray weights and have no activation, as in ISRF.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.field.grids import VMGrid


class FeatureField(nn.Module):
    def __init__(self, dims: int, rank: int, resolution: list[int]):
        super().__init__()
        self.grid = VMGrid(dims, rank, resolution)
        self.background = nn.Parameter(torch.zeros(dims))

    @property
    def dims(self) -> int:
        return self.background.shape[0]

    @property
    def resolution(self) -> list[int]:
        return [self.grid.planes[0].shape[2], self.grid.planes[0].shape[3], self.grid.lines[0].shape[2]]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [M, 3] in the field's [-1, 1] box -> features [M, D]."""
        return self.grid(coords)

    def parameter_groups(self, lr_grid: float, lr_basis: float) -> list[dict]:
        return [
            {"params": list(self.grid.planes) + list(self.grid.lines), "lr": lr_grid, "name": "grid"},
            {"params": list(self.grid.basis.parameters()) + [self.background], "lr": lr_basis,
             "name": "basis"},
        ]

    def num_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    @classmethod
    def from_state_dict(cls, state: dict) -> "FeatureField":
        planes = [state[f"grid.planes.{i}"] for i in range(3)]
        rank, dims = planes[0].shape[1], state["background"].shape[0]
        resolution = [planes[0].shape[2], planes[0].shape[3], state["grid.lines.0"].shape[2]]
        field = cls(dims, rank, resolution)
        field.load_state_dict(state)
        return field
