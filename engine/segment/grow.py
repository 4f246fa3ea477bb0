"""Growing regions over the occupied voxels of a `VoxelDomain`, one voxel layer a round.

Both operations work on the frontier only: each round looks at the neighbours of the
voxels that joined in the previous round, so the total work is proportional to the
region's size times 26, not to the grid's size times the number of rounds. All steps are
tensor operations over the whole frontier (no Python loop over voxels).

A stroke runs a few hundred rounds of small tensors, so a round's cost is mostly fixed
costs, not arithmetic: the tensor operations it issues (each a few microseconds to
dispatch, and a kernel launch on a GPU) and the times it waits for a GPU (every tensor
whose size depends on the data). So a round issues about 25 operations and waits once:
- masks carry one spare slot at the end, which index -1 ("no voxel" in the neighbour
  table) reaches by wrapping around: no bounds checks or remapping;
- neighbours are de-duplicated by a scatter (one writer wins each voxel), not a sort;
- the neighbours found to vote on candidates are kept as the next round's frontier;
- on a GPU the candidates that failed their vote stay in that frontier, masked out,
  instead of being dropped by a second data-sized selection (`masks_frontier`).
`scripts/bench_segment.py --case growth_rounds` measures a round's fixed cost.

On a GPU with Triton, both operations run as fused kernels instead (grow_fused.py: a
round in three launches); these PyTorch versions are their reference. `kernels`:
"auto" (fused on a GPU when Triton is there), "torch" or "triton".
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch

from engine.errors import IsrfError
from engine.segment import grow_fused
from engine.segment.voxels import NEIGHBOUR_L1, VoxelDomain

Kernels = Literal["auto", "torch", "triton"]
_fused_failed = False   # set when the fused kernels failed once: "auto" stops trying them

VOTE_CHUNK = 1 << 18   # candidates voted on at once: a few [chunk, 26] arrays in memory


def masks_frontier(device: torch.device) -> bool:
    """Whether the voxels that failed their vote stay in the next frontier, masked out:
    on a GPU that saves a wait; on a CPU, where selecting costs no wait, a smaller
    frontier is cheaper."""
    return device.type == "cuda"


def auto_kernels(device: torch.device) -> Literal["torch", "triton"]:
    """What "auto" runs on `device` now: the fused kernels on a GPU with Triton, unless
    they failed once in this process."""
    fused = device.type == "cuda" and grow_fused.usable(device) and not _fused_failed
    return "triton" if fused else "torch"


def _run(kernels: Kernels, device: torch.device, fused, reference):
    """`fused()` or `reference()` as `kernels` asks (see the module docstring)."""
    global _fused_failed
    if kernels == "torch" or (kernels == "auto" and auto_kernels(device) == "torch"):
        return reference()
    if kernels == "triton":
        if not grow_fused.usable(device):
            raise IsrfError(f"growth: Triton's kernels cannot run on {device} "
                            "(Triton missing, or neither CUDA nor TRITON_INTERPRET=1)")
        return fused()
    try:
        return fused()
    except Exception as error:   # e.g. a Triton that cannot compile for this GPU
        _fused_failed = True
        warnings.warn(f"growth: the fused kernels failed ({error!r}); using PyTorch "
                      "operations from now on", RuntimeWarning, stacklevel=3)
        return reference()


def warm_up(device: torch.device, features: torch.dtype) -> None:
    """Compile the fused kernels for `device` and a domain of `features` dtype now (about
    a second each the first time on a machine, then from Triton's disk cache) instead of
    in the first stroke. Nothing to do where "auto" does not use them."""
    if auto_kernels(device) == "torch":
        return
    coords = torch.nonzero(torch.ones(4, 4, 4, dtype=torch.bool, device=device))
    domain = VoxelDomain.create(coords, [4, 4, 4], torch.ones(64, 1, dtype=features, device=device))
    seeds = torch.zeros(64, dtype=torch.bool, device=device)
    seeds[0] = True
    everywhere = torch.ones_like(seeds)
    bilateral_grow(domain, seeds, everywhere, 0.1, 1.0, 0.1, 2)
    propagate(domain, seeds, everywhere)


def _neighbours(domain: VoxelDomain, rows: torch.Tensor) -> torch.Tensor:
    """[C] rows -> [C, 26] int64 rows of their neighbours (-1: empty). Indexing with int32
    would convert the indices on every use."""
    return domain.neighbours(rows).long()


def _with_spare(mask: torch.Tensor) -> torch.Tensor:
    """[M] bool -> [M + 1]: a spare False slot at the end, where index -1 lands."""
    return torch.cat([mask, mask.new_zeros(1)])


def _distinct_free(nearby: torch.Tensor, free: torch.Tensor, owner: torch.Tensor
                   ) -> torch.Tensor:
    """Rows [C] (distinct, in no particular order) of `nearby` [N] (-1: no voxel) that are
    `free` [M + 1] -> int64; `owner` [M + 1] int64 is scratch (its contents do not matter)."""
    # Every copy of a voxel writes its position; one write wins, and only the winning
    # position keeps the voxel. -1 writes to and reads the spare slot, never free.
    position = torch.arange(len(nearby), device=nearby.device)
    owner[nearby] = position
    keep = (owner[nearby] == position) & free[nearby]
    return nearby[keep]                                     # the round's one wait


class _Vote:
    """ISRF's bilateral vote of a voxel p on joining a region M:
        sum_q M(q) w(p, q) / sum_q w(p, q),  w = exp(-|F(q) - F(p)|^2 / sigma_f - |q - p|_1 / sigma_d)
    over the occupied 26 neighbours q of p (empty space has no meaningful feature)."""

    def __init__(self, domain: VoxelDomain, sigma_f: float, sigma_d: float):
        # Unit features: -|a - b|^2 / sigma_f = (2 / sigma_f) a.b - 2 / sigma_f, so a
        # weight is one exp of a scaled similarity plus a fixed offset per neighbour.
        self.similarity = domain.neighbour_similarity()                   # [M, 26]
        self.scale = 2 / sigma_f
        self.offset = -NEIGHBOUR_L1.to(domain.device) / sigma_d - self.scale  # [26]

    def _weights(self, rows: torch.Tensor) -> torch.Tensor:
        """[c] rows -> [c, 26] float32 weights (exactly 0 for empty neighbours, whose
        similarity is -inf; a rounding-high similarity above 1 counts as 1)."""
        similarity = self.similarity[rows].clamp_max(1)
        return torch.exp(torch.add(self.offset, similarity, alpha=self.scale))

    def _sums(self, rows: torch.Tensor, nearby: torch.Tensor, region: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_q M(q) w(p, q), sum_q w(p, q)) [C] each, for voxels `rows` [C] with
        neighbours `nearby` [C, 26] and region `region` [M + 1]."""
        inside, total = [], []
        for start in range(0, len(rows), VOTE_CHUNK):
            weight = self._weights(rows[start:start + VOTE_CHUNK])
            inside.append((weight * region[nearby[start:start + VOTE_CHUNK]]).sum(1))
            total.append(weight.sum(1))
        if len(inside) == 1:
            return inside[0], total[0]
        return torch.cat(inside), torch.cat(total)

    def shares(self, rows: torch.Tensor, nearby: torch.Tensor, region: torch.Tensor
               ) -> torch.Tensor:
        """The vote of voxels `rows` [C] with neighbours `nearby` [C, 26] on joining
        `region` [M + 1] -> [C] float in [0, 1] (0 with no occupied neighbour)."""
        inside, total = self._sums(rows, nearby, region)
        return inside / total.clamp_min(1e-30)

    def passes(self, rows: torch.Tensor, nearby: torch.Tensor, region: torch.Tensor,
               join: float) -> torch.Tensor:
        """`shares(...) > join` [C] bool, without the division."""
        inside, total = self._sums(rows, nearby, region)
        return inside > total * join


def bilateral_scores(domain: VoxelDomain, candidates: torch.Tensor, region: torch.Tensor,
                     sigma_f: float, sigma_d: float) -> torch.Tensor:
    """ISRF's bilateral vote (`_Vote`) of each voxel `candidates` [C] on joining
    `region` [M] bool -> [C] float in [0, 1]."""
    return _Vote(domain, sigma_f, sigma_d).shares(
        candidates, _neighbours(domain, candidates), _with_spare(region))


def propagate(domain: VoxelDomain, start: torch.Tensor, allowed: torch.Tensor,
              max_rounds: int | None = None, kernels: Kernels = "auto") -> torch.Tensor:
    """Voxels reachable from `start` [M] bool through 26-connected `allowed` [M] bool voxels
    (start voxels must be allowed themselves), in at most `max_rounds` steps -> [M] bool."""
    return _run(kernels, start.device,
                lambda: grow_fused.propagate(domain, start, allowed, max_rounds),
                lambda: _propagate(domain, start, allowed, max_rounds))


def _propagate(domain: VoxelDomain, start: torch.Tensor, allowed: torch.Tensor,
               max_rounds: int | None) -> torch.Tensor:
    region = start & allowed
    # Only what is still free is tracked: the region is the allowed voxels no longer free.
    free = _with_spare(allowed & ~region)                                 # [M + 1]
    owner = torch.empty(len(free), dtype=torch.int64, device=free.device)
    nearby = _neighbours(domain, torch.nonzero(region)[:, 0])             # [F, 26]
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        reached = _distinct_free(nearby.reshape(-1), free, owner)
        if len(reached) == 0:
            break
        free[reached] = False
        nearby = _neighbours(domain, reached)
        rounds += 1
    return allowed & ~free[:-1]


def bilateral_grow(domain: VoxelDomain, region: torch.Tensor, allowed: torch.Tensor,
                   sigma_f: float, sigma_d: float, join: float, max_rounds: int,
                   kernels: Kernels = "auto") -> tuple[torch.Tensor, int]:
    """Grow `region` [M] bool into `allowed` voxels until no candidate's bilateral score
    exceeds `join` (>= 0), or for `max_rounds` rounds -> (grown region [M] bool, rounds run).

    A voxel that fails may pass in a later round, after more of its neighbours joined:
    each round votes on every allowed neighbour of the voxels that just joined."""
    vote = _Vote(domain, sigma_f, sigma_d)
    return _run(kernels, region.device,
                lambda: grow_fused.bilateral_grow(domain, region, allowed, vote.similarity,
                                                  vote.offset, vote.scale, join, max_rounds),
                lambda: _bilateral_grow(domain, region, allowed, vote, join, max_rounds))


def _bilateral_grow(domain: VoxelDomain, region: torch.Tensor, allowed: torch.Tensor,
                    vote: _Vote, join: float, max_rounds: int) -> tuple[torch.Tensor, int]:
    masked = masks_frontier(region.device)
    region = _with_spare(region)                                          # [M + 1]
    free = _with_spare(allowed) & ~region
    owner = torch.empty(len(region), dtype=torch.int64, device=region.device)
    nearby = _neighbours(domain, torch.nonzero(region)[:, 0])             # [F, 26]
    rounds = 0
    while rounds < max_rounds:
        candidates = _distinct_free(nearby.reshape(-1), free, owner)      # [C]
        if len(candidates) == 0:
            break
        nearby = _neighbours(domain, candidates)                          # [C, 26]
        joined = vote.passes(candidates, nearby, region, join)            # [C]
        region[candidates] = joined
        # A candidate that failed stays free: it is voted on again whenever one more of
        # its neighbours joins.
        free[candidates] = ~joined
        nearby = torch.where(joined[:, None], nearby, -1) if masked else nearby[joined]
        rounds += 1
    return region[:-1].clone(), rounds
