"""Growing regions over the occupied voxels of a `VoxelDomain`, one voxel layer a round.

Both operations work on the frontier only: each round looks at the neighbours of the
voxels that joined in the previous round, so the total work is proportional to the
region's size times 26, not to the grid's size times the number of rounds. All steps are
tensor operations over the whole frontier (no Python loop over voxels).

A stroke runs a few hundred rounds, so on a GPU a round's cost is mostly the times it
waits for the device (every tensor whose size depends on the data), not its arithmetic.
A round waits once: the neighbours are de-duplicated by a scatter (one writer wins each
voxel) instead of a sort, and on a GPU the voxels that failed their vote stay in the
frontier, masked out, instead of being dropped by a second data-sized selection.
"""

from __future__ import annotations

import torch

from engine.segment.voxels import NEIGHBOUR_L1, VoxelDomain

FRONTIER_CHUNK = 1 << 16   # candidates scored at once: a few [chunk, 26] arrays in memory


def masks_frontier(device: torch.device) -> bool:
    """Whether a round keeps the voxels that failed their vote in the next frontier,
    masked out: on a GPU that saves a wait; on a CPU, where selecting costs no wait, a
    smaller frontier is cheaper."""
    return device.type == "cuda"


class _Frontier:
    """The voxels whose neighbours a round looks at, and the scratch to find those.

    rows [F] (int64) with live [F] bool (None: all live): masked-out rows are skipped
    without the device-to-host wait that dropping them would cost."""

    def __init__(self, domain: VoxelDomain, region: torch.Tensor, allowed: torch.Tensor):
        size = domain.size
        self.domain = domain
        # One spare slot at the end stands for "no voxel" (-1): gathers and scatters
        # need no bounds check, and the spare is never free to join.
        self.free = torch.cat([allowed & ~region, allowed.new_zeros(1)])       # [M + 1]
        self.owner = torch.empty(size + 1, dtype=torch.int64, device=domain.device)
        self.rows = torch.nonzero(region)[:, 0]
        self.live: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def candidates(self) -> torch.Tensor:
        """Rows [C] (distinct, in no particular order) next to the live frontier that are
        still free; they stop being free (the caller decides whether they join)."""
        nearby = self.domain.neighbours(self.rows).long()                      # [F, 26]
        if self.live is not None:
            nearby = torch.where(self.live[:, None], nearby, -1)
        nearby = nearby.reshape(-1)
        nearby = torch.where(nearby >= 0, nearby, self.domain.size)           # -1 -> spare
        # De-duplicate without sorting: every copy of a voxel writes its position, one
        # write wins, and only the winning position keeps the voxel.
        position = torch.arange(len(nearby), device=nearby.device)
        self.owner[nearby] = position
        keep = (self.owner[nearby] == position) & self.free[nearby]
        chosen = nearby[keep]                                                  # the one wait
        self.free[chosen] = False
        return chosen

    def advance(self, rows: torch.Tensor, joined: torch.Tensor | None = None):
        """The next round looks from `rows` [C], only those where `joined` [C] bool."""
        if joined is not None and not masks_frontier(rows.device):
            rows, joined = rows[joined], None
        self.rows, self.live = rows, joined


def propagate(domain: VoxelDomain, start: torch.Tensor, allowed: torch.Tensor,
              max_rounds: int | None = None) -> torch.Tensor:
    """Voxels reachable from `start` [M] bool through 26-connected `allowed` [M] bool voxels
    (start voxels must be allowed themselves), in at most `max_rounds` steps -> [M] bool."""
    region = start & allowed
    frontier = _Frontier(domain, region, allowed)
    rounds = 0
    while len(frontier) and (max_rounds is None or rounds < max_rounds):
        reached = frontier.candidates()
        region[reached] = True
        frontier.advance(reached)
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
    frontier = _Frontier(domain, region, allowed)
    rounds = 0
    while len(frontier) and rounds < max_rounds:
        candidates = frontier.candidates()
        if len(candidates) == 0:
            break
        joined = bilateral_scores(domain, candidates, region, sigma_f, sigma_d) > join  # [C]
        region[candidates] |= joined
        # A candidate that failed is free again: it is voted on afresh whenever one more
        # of its neighbours joins.
        frontier.free[candidates] |= ~joined
        frontier.advance(candidates, joined)
        rounds += 1
    return region, rounds
