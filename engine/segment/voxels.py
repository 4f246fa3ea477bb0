"""The segmentation domain: the occupied voxels of a trained field and their features.

Segmentation never touches empty space, and never builds a dense feature volume (ISRF's
dense 64 x 320^3 float grid and its copies need 22-23 GB). The domain keeps, for the M
occupied voxels only:
- `coords` [M, 3] int32: grid index of each voxel (the field's grid vertices);
- `features` [M, D], L2-normalised: the distilled feature at the voxel, and its colour
  when `colour_weight` > 0 (three more dimensions, colour.py) (float16 on a GPU,
  where it halves the memory at no cost in speed; float32 on a CPU, which has no fast
  float16 arithmetic and would convert on every use);
and one dense int32 grid mapping a grid position to its row in those (-1: empty), padded
with one layer of -1 on every side. Neighbours are found by adding a fixed flat offset to
a voxel's flat position in that padded grid: one gather, with no bounds checks, because
the 26 neighbours of a grid voxel are always inside the padding.
A segment's mask is a bool vector [M] over these rows.

Region growing scores each candidate against its 26 neighbours' features many times over
(every stroke that grows through the same voxels), so the domain keeps, once computed,
the feature similarity of every voxel with each neighbour ([M, 26]: about the features'
own size at D = 32): a round then gathers 26 numbers per candidate instead of 26 x D.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.segment.colour import COLOUR_DIMS, voxel_colours, with_colour

# The 26 neighbours of a voxel, and their L1 distances (1 face, 2 edge, 3 corner).
NEIGHBOUR_OFFSETS = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1)
                                  for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)], dtype=torch.int32)
NEIGHBOUR_L1 = NEIGHBOUR_OFFSETS.abs().sum(1).float()
CHUNK = 1 << 18
SIMILARITY_CHUNK = 1 << 18   # rows at once: two [chunk, D] gathers of features in memory


def feature_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass
class VoxelDomain:
    coords: torch.Tensor      # [M, 3] int32
    padded: torch.Tensor      # [X + 2, Y + 2, Z + 2] int32: row of each voxel, or -1
    features: torch.Tensor    # [M, D] unit length (see feature_dtype)

    @classmethod
    def create(cls, coords: torch.Tensor, shape: list[int], features: torch.Tensor
               ) -> "VoxelDomain":
        """A domain of the voxels at grid positions `coords` [M, 3] (int) of a grid of
        `shape` [X, Y, Z], with their `features` [M, D] (unit length, see feature_dtype)."""
        coords = coords.to(torch.int32)
        padded = torch.full([s + 2 for s in shape], -1, dtype=torch.int32, device=coords.device)
        inner = coords.long() + 1
        padded[inner[:, 0], inner[:, 1], inner[:, 2]] = torch.arange(
            len(coords), dtype=torch.int32, device=coords.device)
        return cls(coords, padded, features)

    @classmethod
    @torch.no_grad()
    def of(cls, field: RadianceField, features: FeatureField, min_alpha: float = 0.0,
           colour_weight: float = 0.0, direction: torch.Tensor | None = None
           ) -> "VoxelDomain":
        """The occupied voxels of `field` (one-step opacity above `min_alpha` too) and the
        features `features` gives them, with the field's colour seen along `direction` [3]
        appended at `colour_weight` when that is above 0 (engine/segment/colour.py)."""
        if colour_weight > 0 and direction is None:
            raise ValueError("VoxelDomain.of: colour needs the direction to see it along")
        occupied = field.occupancy & (field.voxel_alpha() > min_alpha)
        coords = torch.nonzero(occupied).to(torch.int32)
        size = torch.tensor(field.resolution, device=coords.device, dtype=torch.float32)
        dims = features.dims + (COLOUR_DIMS if colour_weight > 0 else 0)
        # Filled in place: a list of chunks and their concatenation would hold the table
        # twice (at fern `images_4` and 320^3, 7.3M x 64 features: 0.9 GB more on a GPU).
        table = torch.empty(len(coords), dims, dtype=feature_dtype(coords.device),
                            device=coords.device)
        for start in range(0, len(coords), CHUNK):
            normalised = coords[start:start + CHUNK].float() / (size - 1) * 2 - 1
            rgb = voxel_colours(field, normalised, direction) if colour_weight > 0 else None
            table[start:start + CHUNK] = with_colour(features(normalised), rgb, colour_weight)
        return cls.create(coords, list(occupied.shape), table)

    def __post_init__(self):
        strides = torch.tensor(self.padded.stride(), device=self.device)
        self._flat = ((self.coords.long() + 1) * strides).sum(1)                 # [M]
        self._neighbour_steps = (NEIGHBOUR_OFFSETS.to(self.device).long() * strides).sum(1)  # [26]
        self._similarity: torch.Tensor | None = None

    @property
    def index(self) -> torch.Tensor:
        """[X, Y, Z] int32: the row of each grid voxel, or -1 (a view of the padded grid)."""
        return self.padded[1:-1, 1:-1, 1:-1]

    @property
    def flat_positions(self) -> torch.Tensor:
        """[M] int64: each voxel's position in the flattened padded grid."""
        return self._flat

    @property
    def neighbour_steps(self) -> torch.Tensor:
        """[26] int64: what to add to a flat position to reach each neighbour (the order
        of NEIGHBOUR_OFFSETS)."""
        return self._neighbour_steps

    @property
    def size(self) -> int:
        return len(self.coords)

    @property
    def resolution(self) -> list[int]:
        return [s - 2 for s in self.padded.shape]

    @property
    def device(self) -> torch.device:
        return self.coords.device

    def num_bytes(self) -> int:
        parts = [self.coords, self.padded, self.features, self._flat]
        if self._similarity is not None:
            parts.append(self._similarity)
        return sum(t.numel() * t.element_size() for t in parts)

    def lookup(self, grid_positions: torch.Tensor) -> torch.Tensor:
        """Rows [...] of the voxels at integer grid positions [..., 3] (-1: empty or outside)."""
        size = torch.tensor(self.resolution, device=grid_positions.device)
        inside = ((grid_positions >= 0) & (grid_positions < size)).all(-1)
        clamped = torch.minimum(grid_positions.clamp_min(0), size - 1).long() + 1
        rows = self.padded[clamped[..., 0], clamped[..., 1], clamped[..., 2]]
        return torch.where(inside, rows, torch.full_like(rows, -1))

    def neighbours(self, rows: torch.Tensor) -> torch.Tensor:
        """[C] rows -> [C, 26] rows of their occupied neighbours (-1 where empty)."""
        flat = self._flat[rows][:, None] + self._neighbour_steps                 # [C, 26]
        return self.padded.view(-1)[flat]

    def neighbour_similarity(self) -> torch.Tensor:
        """[M, 26] dot product of each voxel's feature with each neighbour's (the order of
        `neighbours`; -inf where the neighbour is empty, so that a weight exp(scale * dot)
        is exactly 0 there), in the features' dtype. Computed on the first call (about a
        second for 600k voxels on 2 CPU cores), then kept."""
        if self._similarity is None:
            similarity = torch.full((self.size, 26), float("-inf"), dtype=self.features.dtype,
                                    device=self.device)
            # Offsets come in opposite pairs (n, 25 - n): p.q is computed once for both.
            for n in range(13):
                for start in range(0, self.size, SIMILARITY_CHUNK):
                    rows = torch.arange(start, min(start + SIMILARITY_CHUNK, self.size),
                                        device=self.device)
                    other = self.padded.view(-1)[self._flat[rows] + self._neighbour_steps[n]]
                    rows, other = rows[other >= 0], other[other >= 0].long()
                    dots = (self.features[rows].float() * self.features[other].float()).sum(1)
                    similarity[rows, n] = dots.to(similarity.dtype)
                    similarity[other, 25 - n] = dots.to(similarity.dtype)
            self._similarity = similarity
        return self._similarity

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

    def nearest_distances(self, *centre_sets: torch.Tensor) -> list[torch.Tensor]:
        """For each set of centres [K_i, D]: squared L2 [M] from each voxel's feature to
        the nearest of them (all unit length, so |a - b|^2 = 2 - 2 a.b). All sets in one
        pass over the features: reading them is most of the time at large grids (7.3M
        voxels of fern at 320^3: 1.9 GB in fp32), so two sets cost about what one does."""
        sets = [F.normalize(c.float(), dim=-1).to(self.device) for c in centre_sets]
        centres = torch.cat(sets)
        ends = torch.tensor([len(c) for c in sets]).cumsum(0).tolist()
        best = [[] for _ in sets]
        for start in range(0, self.size, CHUNK):
            dots = self.features[start:start + CHUNK].float() @ centres.T      # [C, sum K_i]
            # The largest dot product is the nearest centre: one [C] vector to turn into
            # distances instead of the whole [C, K] matrix (the same numbers; measured
            # 1.7x faster).
            for parts, begin, end in zip(best, [0] + ends[:-1], ends):
                parts.append((2 - 2 * dots[:, begin:end].amax(1)).clamp_min(0))
        empty = torch.zeros(0, device=self.device)
        return [torch.cat(parts) if parts else empty for parts in best]
