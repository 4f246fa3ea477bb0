"""Voxel grids queried by trilinear interpolation: dense and low-rank (VM) grids.

Grids are sampled at normalised coordinates in [-1, 1]^3 (the field's box), with
`align_corners=True`: grid vertex 0 sits on the box minimum, vertex n-1 on its maximum.
Both grids can be resampled onto a new box and resolution (progressive upscaling and
box tightening are one operation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Plane axis pairs and the matching line axis of a VM decomposition (TensoRF).
VM_PLANES = ((0, 1), (0, 2), (1, 2))
VM_LINES = (2, 1, 0)


def sample_dense(grid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """grid [1, C, X, Y, Z], coords [M, 3] in [-1, 1] (x, y, z) -> values [M, C]."""
    # grid_sample indexes the last dimension with the first coordinate: pass (z, y, x).
    points = coords.flip(-1).reshape(1, 1, 1, -1, 3)
    values = F.grid_sample(grid, points, mode="bilinear", align_corners=True)
    return values.reshape(grid.shape[1], -1).T


def _sample_plane(plane: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """plane [1, R, A, B] at coords u (along A), v (along B) [M] -> [R, M]."""
    points = torch.stack([v, u], -1).reshape(1, 1, -1, 2)
    return F.grid_sample(plane, points, mode="bilinear", align_corners=True)[0, :, 0]


def _axis_positions(new_min, new_max, old_min, old_max, size: int, axis: int) -> torch.Tensor:
    """Vertex positions [size] of a new grid axis, in the old grid's normalised coords."""
    world = torch.linspace(float(new_min[axis]), float(new_max[axis]), size, device=new_min.device)
    return (world - old_min[axis]) / (old_max[axis] - old_min[axis]) * 2 - 1


class DenseGrid(nn.Module):
    def __init__(self, channels: int, resolution: list[int], init: float = 0.0):
        super().__init__()
        self.grid = nn.Parameter(torch.full((1, channels, *resolution), float(init)))

    @property
    def resolution(self) -> list[int]:
        return list(self.grid.shape[2:])

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return sample_dense(self.grid, coords)

    @torch.no_grad()
    def resample(self, old_box, new_box, resolution: list[int]) -> None:
        axes = [_axis_positions(*new_box, *old_box, n, a) for a, n in enumerate(resolution)]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        values = sample_dense(self.grid, coords).T.reshape(1, -1, *resolution)
        self.grid = nn.Parameter(values.contiguous())


class VMGrid(nn.Module):
    """Low-rank grid: sum over 3 axis pairs of (plane x line) components, then a basis.

    Memory is O(R * n^2) instead of O(C * n^3): three [R, n, n] planes and three [R, n]
    lines, mixed by a [3R -> C] matrix.
    """

    def __init__(self, channels: int, rank: int, resolution: list[int], scale: float = 0.1):
        super().__init__()
        self.planes = nn.ParameterList(
            nn.Parameter(scale * torch.randn(1, rank, resolution[a], resolution[b]))
            for a, b in VM_PLANES)
        self.lines = nn.ParameterList(
            nn.Parameter(scale * torch.randn(1, rank, resolution[c], 1)) for c in VM_LINES)
        self.basis = nn.Linear(3 * rank, channels, bias=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [M, 3] in [-1, 1] -> features [M, C]."""
        zeros = torch.zeros_like(coords[:, 0])
        components = []
        for plane, line, (a, b), c in zip(self.planes, self.lines, VM_PLANES, VM_LINES):
            components.append(_sample_plane(plane, coords[:, a], coords[:, b])
                              * _sample_plane(line, coords[:, c], zeros))
        return self.basis(torch.cat(components).T)

    @torch.no_grad()
    def resample(self, old_box, new_box, resolution: list[int]) -> None:
        axes = [_axis_positions(*new_box, *old_box, n, a) for a, n in enumerate(resolution)]
        for i, ((a, b), c) in enumerate(zip(VM_PLANES, VM_LINES)):
            u, v = torch.meshgrid(axes[a], axes[b], indexing="ij")
            plane = _sample_plane(self.planes[i], u.reshape(-1), v.reshape(-1))
            self.planes[i] = nn.Parameter(plane.reshape(1, -1, len(axes[a]), len(axes[b])).contiguous())
            line = _sample_plane(self.lines[i], axes[c], torch.zeros_like(axes[c]))
            self.lines[i] = nn.Parameter(line.reshape(1, -1, len(axes[c]), 1).contiguous())
