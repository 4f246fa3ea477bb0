"""Region growth on a GPU as fused kernels (Triton): the same rounds as grow.py, each in
three kernel launches (propagation: one) and one wait for the device, instead of about
25 PyTorch operations.

Why: a stroke at 320^3 runs a few hundred rounds of small tensors, so PyTorch's fixed
cost per operation (dispatch and kernel launch, several microseconds each), not the
arithmetic, would make most of a stroke's time (docs/segmentation_measurements.md, "GPU").

A round of growth:
1. `_expand`: every (frontier voxel, neighbour) pair; a neighbour that is free (allowed,
   not in the region) is claimed with an atomic exchange, so each voxel is listed once,
   and appended to the candidates (a block reserves its slots with one atomic add and
   places its voxels by a prefix sum). The host reads the candidate count: the one wait.
2. `_vote`: each candidate's bilateral vote, from the region as it was before the round
   (decisions go to a buffer, so no candidate sees another's join).
3. `_apply`: the winners join the region and stop being free; every candidate's claim
   is released (a loser is voted on again when one more neighbour joins); the next
   frontier is the candidates, losers masked out (-1).
Propagation is step 1 alone, where the claim is the join itself.

The pure-PyTorch growth in grow.py is the reference: the tests run these kernels in
Triton's interpreter on the CPU (TRITON_INTERPRET=1) and on a GPU when one is there,
and compare both. Sets are compared, not orders: the candidates' order depends on the
atomics, their votes do not.
"""

from __future__ import annotations

import os

import torch

from engine.segment.voxels import VoxelDomain

try:
    import triton
    import triton.language as tl
except ImportError:   # e.g. a CPU-only build of PyTorch on a platform without Triton
    triton = None

BLOCK = 1024         # (voxel, neighbour) pairs or candidates per program
VOTERS = 32          # candidates per program of `_vote`: 32 x 32 (26 used) neighbours
COUNTERS = 1024      # per-round candidate counters allocated at once


def usable(device: torch.device) -> bool:
    """Whether the fused kernels can run on `device`: a CUDA device with Triton, or any
    device under Triton's interpreter (TRITON_INTERPRET=1, for tests)."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:
    @triton.jit(do_not_specialize=["count"])   # one compiled kernel for every count
    def _expand(frontier, count, flat, steps, padded, free, claim, out, counter,
                JOIN_NOW: tl.constexpr, BLOCK: tl.constexpr):
        """Free neighbours of frontier [count] int32 (-1: masked out) -> out[counter...];
        JOIN_NOW: claiming a voxel makes it not free (propagation)."""
        pair = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = pair < count * 26
        row = tl.load(frontier + pair // 26, mask=inside, other=-1)
        alive = inside & (row >= 0)
        position = tl.load(flat + row, mask=alive, other=0) + tl.load(steps + pair % 26, mask=alive, other=0)
        near = tl.load(padded + position, mask=alive, other=-1)
        ok = alive & (near >= 0)
        ok = ok & (tl.load(free + near, mask=ok, other=0) != 0)
        if JOIN_NOW:
            won = ok & (tl.atomic_xchg(free + near, 0, mask=ok) != 0)
        else:
            won = ok & (tl.atomic_xchg(claim + near, 1, mask=ok) == 0)
        wins = won.to(tl.int32)
        base = tl.atomic_add(counter, tl.sum(wins, axis=0))
        tl.store(out + base + tl.cumsum(wins, axis=0) - 1, near, mask=won)

    @triton.jit(do_not_specialize=["count"])
    def _vote(candidates, count, flat, steps, padded, similarity, region, offset, scale,
              join, joined, BLOCK: tl.constexpr):
        """joined[i] = the bilateral vote of candidates[i] exceeds `join` (grow.py's _Vote)."""
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = index < count
        row = tl.load(candidates + index, mask=inside, other=0)
        k = tl.arange(0, 32)
        pair = inside[:, None] & (k < 26)[None, :]                                # [B, 32]
        position = tl.load(flat + row, mask=inside, other=0)[:, None] + \
            tl.load(steps + k, mask=k < 26, other=0)[None, :]
        near = tl.load(padded + position, mask=pair, other=-1)
        # An empty neighbour's similarity is -inf in the table: its weight is exactly 0.
        dot = tl.load(similarity + row[:, None].to(tl.int64) * 26 + k[None, :], mask=pair,
                      other=0.0).to(tl.float32)
        weight = tl.exp(tl.load(offset + k, mask=k < 26, other=0)[None, :] +
                        scale * tl.minimum(dot, 1.0))
        weight = tl.where(pair, weight, 0.0)
        member = tl.load(region + near, mask=pair & (near >= 0), other=0).to(tl.float32)
        passes = tl.sum(weight * member, axis=1) > tl.sum(weight, axis=1) * join
        tl.store(joined + index, passes.to(tl.int8), mask=inside)

    @triton.jit(do_not_specialize=["count"])
    def _apply(candidates, count, joined, region, free, claim, following,
               BLOCK: tl.constexpr):
        """Winners join; every claim is released; following = candidates, losers -1."""
        index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = index < count
        row = tl.load(candidates + index, mask=inside, other=0)
        won = inside & (tl.load(joined + index, mask=inside, other=0) != 0)
        tl.store(region + row, 1, mask=won)
        tl.store(free + row, 0, mask=won)
        tl.store(claim + row, 0, mask=inside)
        tl.store(following + index, tl.where(won, row, -1), mask=inside)


class _Rounds:
    """The buffers of one growth or propagation: voxel states and row lists, [M] each."""

    def __init__(self, domain: VoxelDomain, region: torch.Tensor, free: torch.Tensor,
                 claims: bool):
        device, size = region.device, domain.size
        self.domain = domain
        self.padded = domain.padded.reshape(-1)                                # int32
        self.region = region.to(torch.int8)                                    # [M]
        self.free = free.to(torch.int32)                                       # [M]
        # Growth claims candidates; propagation flips `free` instead and never reads
        # this (the kernel still takes a pointer: `free` stands in).
        self.claim = torch.zeros(size, dtype=torch.int32, device=device) if claims else self.free
        self.frontier = torch.full((size,), -1, dtype=torch.int32, device=device)
        start = torch.nonzero(region)[:, 0]
        self.frontier[:len(start)] = start.to(torch.int32)
        self.count = len(start)
        self.candidates = torch.empty(size, dtype=torch.int32, device=device)
        # One fresh counter a round (no reset launches), 16 bytes apart: Triton compiles
        # a variant per pointer alignment, and one should do.
        self.counters = torch.zeros(0, 4, dtype=torch.int32, device=device)    # [R, 4]
        self.used = 0

    def expand(self, join_now: bool) -> int:
        """Step 1 -> the number of candidates (waits for the device)."""
        if self.used == len(self.counters):
            self.counters = torch.zeros(COUNTERS, 4, dtype=torch.int32, device=self.region.device)
            self.used = 0
        counter = self.counters[self.used, :1]
        self.used += 1
        _expand[(triton.cdiv(self.count * 26, BLOCK),)](
            self.frontier, self.count, self.domain.flat_positions, self.domain.neighbour_steps,
            self.padded, self.free, self.claim, self.candidates, counter,
            JOIN_NOW=join_now, BLOCK=BLOCK)
        return int(counter.item())


def bilateral_grow(domain: VoxelDomain, region: torch.Tensor, allowed: torch.Tensor,
                   similarity: torch.Tensor, offset: torch.Tensor, scale: float, join: float,
                   max_rounds: int) -> tuple[torch.Tensor, int]:
    """grow.bilateral_grow as fused kernels (the same result). The vote's weights are
    exp(offset[n] + scale * min(similarity[p, n], 1)), as grow.py's _Vote makes them:
    similarity [M, 26] (domain.neighbour_similarity), offset [26], scale."""
    state = _Rounds(domain, region, allowed & ~region, claims=True)
    joined = torch.empty(domain.size, dtype=torch.int8, device=region.device)
    rounds = 0
    while rounds < max_rounds and state.count:
        count = state.expand(join_now=False)
        if count == 0:
            break
        _vote[(triton.cdiv(count, VOTERS),)](
            state.candidates, count, domain.flat_positions, domain.neighbour_steps,
            state.padded, similarity, state.region, offset.contiguous(), scale, join, joined,
            BLOCK=VOTERS)
        # Once expanded, the frontier's list is free: the next frontier (the candidates,
        # losers -1) is written over it.
        _apply[(triton.cdiv(count, BLOCK),)](
            state.candidates, count, joined, state.region, state.free, state.claim,
            state.frontier, BLOCK=BLOCK)
        state.count = count
        rounds += 1
    return state.region.bool(), rounds


def propagate(domain: VoxelDomain, start: torch.Tensor, allowed: torch.Tensor,
              max_rounds: int | None = None) -> torch.Tensor:
    """grow.propagate as fused kernels (same arguments, same result)."""
    region = start & allowed
    state = _Rounds(domain, region, allowed & ~region, claims=False)
    rounds = 0
    while (max_rounds is None or rounds < max_rounds) and state.count:
        count = state.expand(join_now=True)
        state.frontier, state.candidates = \
            state.candidates, state.frontier
        state.count = count
        rounds += 1
    return allowed & (state.free == 0)
