"""The segmentation domain: the occupied voxels of a trained field and their features.

Segmentation never touches empty space, and never builds a dense feature volume (ISRF's
dense 64 x 320^3 float grid and its copies need 22-23 GB). The domain keeps, for the M
occupied voxels only:
- `coords` [M, 3] int32: grid index of each voxel (the field's grid vertices);
- `features` [M, D] float16: the distilled feature at the voxel, L2-normalised;
and one dense int32 grid `index` [X, Y, Z] mapping a grid position to its row in those
(-1: empty), so neighbours are found by arithmetic instead of a stored adjacency list.
A segment's mask is a bool vector [M] over these rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField

# The 26 neighbours of a voxel, and their L1 distances (1 face, 2 edge, 3 corner).
NEIGHBOUR_OFFSETS = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1)
                                  for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)], dtype=torch.int32)
NEIGHBOUR_L1 = NEIGHBOUR_OFFSETS.abs().sum(1).float()
CHUNK = 1 << 18


@dataclass
class VoxelDomain:
    coords: torch.Tensor      # [M, 3] int32
    index: torch.Tensor       # [X, Y, Z] int32, row in coords/features or -1
    features: torch.Tensor    # [M, D] float16, unit length

    @classmethod
    @torch.no_grad()
    def of(cls, field: RadianceField, features: FeatureField, min_alpha: float = 0.0
           ) -> "VoxelDomain":
        """The occupied voxels of `field` (one-step opacity above `min_alpha` too) and the
        features `features` gives them."""
        occupied = field.occupancy & (field.voxel_alpha() > min_alpha)
        coords = torch.nonzero(occupied).to(torch.int32)
        index = torch.full(occupied.shape, -1, dtype=torch.int32, device=occupied.device)
        index[occupied] = torch.arange(len(coords), dtype=torch.int32, device=occupied.device)
        size = torch.tensor(field.resolution, device=coords.device, dtype=torch.float32)
        rows = []
        for start in range(0, len(coords), CHUNK):
            normalised = coords[start:start + CHUNK].float() / (size - 1) * 2 - 1
            rows.append(F.normalize(features(normalised), dim=-1).half())
        dims = features.dims
        table = torch.cat(rows) if rows else torch.zeros(0, dims, device=coords.device).half()
        return cls(coords, index, table)

    @property
    def size(self) -> int:
        return len(self.coords)

    @property
    def resolution(self) -> list[int]:
        return list(self.index.shape)

    @property
    def device(self) -> torch.device:
        return self.coords.device

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.coords, self.index, self.features))

    def lookup(self, grid_positions: torch.Tensor) -> torch.Tensor:
        """Rows [...] of the voxels at integer grid positions [..., 3] (-1: empty or outside)."""
        size = torch.tensor(self.resolution, device=grid_positions.device)
        inside = ((grid_positions >= 0) & (grid_positions < size)).all(-1)
        clamped = torch.minimum(grid_positions.clamp_min(0), size - 1).long()
        rows = self.index[clamped[..., 0], clamped[..., 1], clamped[..., 2]]
        return torch.where(inside, rows, torch.full_like(rows, -1))

    def neighbours(self, rows: torch.Tensor) -> torch.Tensor:
        """[C] rows -> [C, 26] rows of their occupied neighbours (-1 where empty)."""
        offsets = NEIGHBOUR_OFFSETS.to(self.device)
        return self.lookup(self.coords[rows][:, None, :] + offsets)

    def rows_at(self, points: torch.Tensor, field: RadianceField) -> torch.Tensor:
        """Rows [P] of the voxels nearest field-space points [P, 3] (-1: empty or outside)."""
        size = torch.tensor(self.resolution, device=points.device)
        grid = (field.normalize(points) + 1) / 2 * (size - 1)
        return self.lookup(grid.round().long())

    def to_grid(self, mask: torch.Tensor) -> torch.Tensor:
        """A mask [M] as a dense bool grid [X, Y, Z] (False in empty space)."""
        grid = torch.zeros(self.resolution, dtype=torch.bool, device=self.device)
        chosen = self.coords[mask].long()
        grid[chosen[:, 0], chosen[:, 1], chosen[:, 2]] = True
        return grid

    def nearest_distance(self, centres: torch.Tensor) -> torch.Tensor:
        """Squared L2 [M] from each voxel's feature to the nearest of centres [K, D]
        (all unit length, so |a - b|^2 = 2 - 2 a.b)."""
        centres = F.normalize(centres.float(), dim=-1).to(self.device)
        best = []
        for start in range(0, self.size, CHUNK):
            chunk = self.features[start:start + CHUNK].float()
            best.append((2 - 2 * (chunk @ centres.T)).amin(1).clamp_min(0))
        return torch.cat(best) if best else torch.zeros(0, device=self.device)
