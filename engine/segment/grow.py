"""Growing regions over the occupied voxels of a `VoxelDomain`, one voxel layer a round.

Both operations work on the frontier only: each round looks at the neighbours of the
voxels that joined in the previous round, so the total work is proportional to the
region's size times 26, not to the grid's size times the number of rounds. All steps are
tensor operations over the whole frontier (no Python loop over voxels).
"""

from __future__ import annotations

import torch

from engine.segment.voxels import NEIGHBOUR_L1, VoxelDomain

FRONTIER_CHUNK = 1 << 16   # candidates scored at once: a few [chunk, 26] arrays in memory


def _candidates(domain: VoxelDomain, frontier: torch.Tensor, region: torch.Tensor,
                allowed: torch.Tensor) -> torch.Tensor:
    """Rows [C] (unique) next to `frontier` [F] that are allowed and not yet in `region`."""
    nearby = domain.neighbours(frontier).reshape(-1)
    nearby = nearby[nearby >= 0].long()
    nearby = nearby[allowed[nearby] & ~region[nearby]]
    return torch.unique(nearby)


def propagate(domain: VoxelDomain, start: torch.Tensor, allowed: torch.Tensor,
              max_rounds: int | None = None) -> torch.Tensor:
    """Voxels reachable from `start` [M] bool through 26-connected `allowed` [M] bool voxels
    (start voxels must be allowed themselves), in at most `max_rounds` steps -> [M] bool."""
    region = start & allowed
    frontier = torch.nonzero(region)[:, 0]
    rounds = 0
    while len(frontier) and (max_rounds is None or rounds < max_rounds):
        frontier = _candidates(domain, frontier, region, allowed)
        region[frontier] = True
        rounds += 1
    return region


def bilateral_scores(domain: VoxelDomain, candidates: torch.Tensor, region: torch.Tensor,
                     sigma_f: float, sigma_d: float) -> torch.Tensor:
    """ISRF's bilateral vote of each candidate p [C]:
        sum_q M(q) w(p, q) / sum_q w(p, q),  w = exp(-|F(q) - F(p)|^2 / sigma_f - |q - p|_1 / sigma_d)
    over the occupied 26 neighbours q of p (empty space has no meaningful feature)."""
    spatial = -NEIGHBOUR_L1.to(domain.device) / sigma_d                    # [26]
    similarity = domain.neighbour_similarity()                              # [M, 26]
    scores = []
    for start in range(0, len(candidates), FRONTIER_CHUNK):
        rows = candidates[start:start + FRONTIER_CHUNK]
        nearby = domain.neighbours(rows)                                  # [c, 26]
        present = nearby >= 0
        # unit vectors: |a - b|^2 = 2 - 2 a.b
        distance = (2 - 2 * similarity[rows].float()).clamp_min(0)       # [c, 26]
        weight = torch.exp(-distance / sigma_f + spatial) * present
        inside = weight * region[nearby.clamp_min(0).long()]
        scores.append(inside.sum(1) / weight.sum(1).clamp_min(1e-12))
    return torch.cat(scores) if scores else torch.zeros(0, device=domain.device)


def bilateral_grow(domain: VoxelDomain, region: torch.Tensor, allowed: torch.Tensor,
                   sigma_f: float, sigma_d: float, join: float, max_rounds: int
                   ) -> tuple[torch.Tensor, int]:
    """Grow `region` [M] bool into `allowed` voxels until no candidate's bilateral score
    exceeds `join`, or for `max_rounds` rounds -> (grown region [M] bool, rounds run).

    A voxel that fails may pass in a later round, after more of its neighbours joined:
    each round re-scores every allowed neighbour of the voxels that just joined."""
    region = region.clone()
    frontier = torch.nonzero(region)[:, 0]
    rounds = 0
    while len(frontier) and rounds < max_rounds:
        candidates = _candidates(domain, frontier, region, allowed)
        if len(candidates) == 0:
            break
        joined = candidates[bilateral_scores(domain, candidates, region, sigma_f, sigma_d) > join]
        region[joined] = True
        frontier = joined
        rounds += 1
    return region, rounds
