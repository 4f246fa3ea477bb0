"""Refining a segment's voxels with the photographs of many views (beyond ISRF).

Strokes select voxels by their features, so a segment misses what the features see as
something else: the default scene's table loses its side faces (the offline backbone
sees them unlike its top), and its mesh has no sides. A segment's 2D masks in dataset
views recover most of such pixels from each photograph (engine/segment/mask_edges.py:
edges that follow the image, pixels of the object's colours next to it), but only in 2D.
Refining lifts those 2D masks back onto the voxels:

1. in each chosen view, render the segment's visible share and make its 2D mask from
   the view's photograph, as `SegmentationSession.mask_image` does;
2. fit one logit per domain voxel so that the segment's rendered share matches those
   masks in every view at once (binary cross-entropy, Adam), starting from the current
   segment (+-INITIAL_LOGIT). Only voxels that render near the segment or its masks in
   some view may change; every pixel whose ray crosses one of them takes part;
3. the segment gains the voxels with a positive logit, except those its red strokes
   removed. It never loses any: a segment that renders too faintly to make a 2D mask
   (a few seeds of a sphere, measured) would have its masks empty everywhere and be
   erased, so taking voxels away is left to red strokes.

A voxel must agree with the photographs of several views to be added, so what one
view's 2D step gets wrong (a shadow's pixels, a neighbour of similar colour) is mostly
outvoted. It reads photographs only, never ground truth. docs/segmentation.md
("Refining with every view") has the measurements and what it costs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

from engine import work
from engine.config import SegmentConfig
from engine.data.cameras import Cameras
from engine.errors import Cancelled
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, trace
from engine.segment.mask_edges import visible_mask
from engine.segment.voxels import VoxelDomain

INITIAL_LOGIT = 2.0       # the current segment's voxels start at sigmoid(2) = 0.88, others 0.12
LEARNING_RATE = 0.5
MIN_WEIGHT = 1e-3         # samples lighter than this do not move a voxel
NEAR_SHARE = 0.05         # pixels where the segment renders at least this much ...
NEAR_PIXELS = 3           # ... and those this close to them or to the 2D mask: what may change
MAX_PIXELS_PER_VIEW = 65536   # evidence pixels kept per view (evenly spread): bounds memory
RAY_CHUNK = 16384
KEPT_SAMPLES = 1 << 24    # samples the first pass keeps for the second (20 B each, 340 MB);
                          # beyond, the second pass samples its views again

Samples = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A view's samples in domain voxels: rows [K] long, weights [K], pixel (row-major) [K] long."""


@dataclass
class ViewEvidence:
    """What one view says about the segment: at its pixels whose rays cross voxels that
    may change, the domain samples along them and the 2D mask's verdict."""
    rows: torch.Tensor      # [K] long: domain row of each sample
    weights: torch.Tensor   # [K] its rendering weight
    pixel: torch.Tensor     # [K] long: which of this view's evidence pixels it belongs to
    target: torch.Tensor    # [P] float 0/1: the 2D mask at the evidence pixels


def view_mask(field: RadianceField, space: RaySpace, cameras: Cameras, view: int,
              domain: VoxelDomain, current: torch.Tensor, image: torch.Tensor,
              params: SegmentConfig) -> tuple[np.ndarray, torch.Tensor, Samples]:
    """The 2D mask of segment `current` [M] bool in dataset view `view` (photograph
    `image` [H, W, 3]) -> (mask [H, W] bool, domain rows [N] of the voxels that render
    near the segment or its mask there: the voxels this view lets change, the view's
    samples that `view_evidence` reads). The mask is made as
    `SegmentationSession.mask_image` makes it, from the segment's visible share, here
    summed from the samples this module needs anyway rather than rendered."""
    rows, weights, pixel = domain_samples(field, space, cameras, view, domain)
    share = torch.zeros(cameras.height * cameras.width, device=domain.device)
    share = share.index_add(0, pixel, weights * current[rows]).reshape(cameras.height, cameras.width)
    mask = visible_mask(share, image, params)
    near = ndimage.binary_dilation(mask | (share > NEAR_SHARE).cpu().numpy(),
                                   iterations=NEAR_PIXELS)
    rows, weights, pixel = heavy_samples((rows, weights, pixel))
    near_rows = rows[torch.from_numpy(near.reshape(-1)).to(domain.device)[pixel]].unique()
    return mask, near_rows, (rows, weights, pixel)


def view_evidence(field: RadianceField, space: RaySpace, cameras: Cameras, view: int,
                  domain: VoxelDomain, mask: np.ndarray, free: torch.Tensor,
                  samples: Samples | None = None) -> ViewEvidence:
    """The evidence of view `view` whose 2D mask is `mask` [H, W]: its pixels whose rays
    cross a `free` [M] bool voxel (at most MAX_PIXELS_PER_VIEW of them). samples: the
    view's heavier than MIN_WEIGHT, when `view_mask` kept them (else sampled again)."""
    if samples is None:
        samples = heavy_samples(domain_samples(field, space, cameras, view, domain))
    rows, weights, ray = samples
    crosses = torch.zeros(mask.size, dtype=torch.bool, device=domain.device)
    crosses[ray[free[rows]]] = True
    pixels = torch.nonzero(crosses)[:, 0]                                      # [P]
    if len(pixels) > MAX_PIXELS_PER_VIEW:
        pixels = pixels[torch.linspace(0, len(pixels) - 1, MAX_PIXELS_PER_VIEW,
                                       device=pixels.device).long()]
    number = torch.full((mask.size,), -1, dtype=torch.long, device=domain.device)
    number[pixels] = torch.arange(len(pixels), device=domain.device)
    chosen = number[ray] >= 0
    target = torch.from_numpy(mask.reshape(-1)).to(domain.device)[pixels].float()
    return ViewEvidence(rows[chosen], weights[chosen], number[ray[chosen]], target)


def heavy_samples(samples: Samples) -> Samples:
    """The samples heavier than MIN_WEIGHT: lighter ones do not move a voxel (or a label:
    scripts/bench_label_ceiling.py)."""
    keep = samples[1] > MIN_WEIGHT
    return tuple(part[keep] for part in samples)


@torch.no_grad()
def domain_samples(field: RadianceField, space: RaySpace, cameras: Cameras, view: int,
             domain: VoxelDomain) -> Samples:
    """The samples in domain voxels along every pixel's ray of view `view`: rows [K],
    weights [K], pixel (row-major) [K]."""
    origins, dirs = cameras.image_rays(view)
    rows, weights, rays = [], [], []
    for start in range(0, len(origins), RAY_CHUNK):
        traced = trace(field, space, origins[start:start + RAY_CHUNK],
                       dirs[start:start + RAY_CHUNK], early_stop=True)
        samples, weight = traced.samples, traced.weights
        row = domain.rows_at(samples.points, field)   # the voxel a segment's render looks up
        keep = row >= 0
        rows.append(row[keep].long()), weights.append(weight[keep])
        rays.append(samples.ray_index[keep] + start)
    return torch.cat(rows), torch.cat(weights), torch.cat(rays)


def fit_voxels(evidence: list[ViewEvidence], current: torch.Tensor, steps: int,
               progress: bool = False, cancel: threading.Event | None = None) -> torch.Tensor:
    """Domain voxels [M] bool whose rendered share best matches every view's 2D mask,
    starting from `current` [M] bool (voxels no evidence sees keep their value)."""
    rows, weights, pixels, targets = [], [], [], []
    offset = 0
    for item in evidence:
        rows.append(item.rows), weights.append(item.weights), targets.append(item.target)
        pixels.append(item.pixel + offset)
        offset += len(item.target)
    rows, weights, pixels, target = map(torch.cat, (rows, weights, pixels, targets))
    logits = torch.where(current, INITIAL_LOGIT, -INITIAL_LOGIT).float().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=LEARNING_RATE)
    with torch.enable_grad():   # callers (the server, benchmarks) may run without gradients
        for done in tqdm(range(steps), desc="refine: fit", disable=not progress, unit="step"):
            _check(cancel)
            with work.step("refine: fit", done, steps):
                contributions = torch.sigmoid(logits)[rows] * weights               # [K]
                share = torch.zeros(offset, device=weights.device).index_add(0, pixels, contributions)
                loss = F.binary_cross_entropy(share.clamp(1e-5, 1 - 1e-5), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return logits.detach() > 0


def refine_voxels(field: RadianceField, space: RaySpace, cameras: Cameras, domain: VoxelDomain,
                  current: torch.Tensor, views: list[int], image_of: Callable[[int], torch.Tensor],
                  params: SegmentConfig, steps: int, progress: bool = False,
                  cancel: threading.Event | None = None) -> torch.Tensor:
    """The segment `current` [M] bool refined with the photographs (`image_of(view)`) of
    dataset `views` -> [M] bool: `current` and the voxels it gains (steps 1-3 of the
    module docstring; the red strokes' rule is the session's). Two passes over the
    views: their 2D masks and the voxels near them (which may change), then the samples
    of every pixel whose ray crosses one of those voxels (so a voxel is judged by every
    view that sees it, not only where it is near the segment)."""
    masks, kept = [], []
    free = current.clone()
    kept_count = 0
    for done, view in enumerate(tqdm(views, desc="refine: 2D masks", disable=not progress,
                                     unit="view")):
        _check(cancel)
        with work.step("refine: 2D masks", done, len(views)):
            mask, near, samples = view_mask(field, space, cameras, view, domain, current,
                                            image_of(view), params)
        masks.append(mask)
        free[near] = True
        kept_count += len(samples[0])
        kept.append(samples if kept_count <= KEPT_SAMPLES else None)
    evidence = []
    for i in tqdm(range(len(views)), desc="refine: evidence", disable=not progress, unit="view"):
        _check(cancel)
        samples, kept[i] = kept[i], None    # held once: as evidence, not also as samples
        with work.step("refine: evidence", i, len(views)):
            evidence.append(view_evidence(field, space, cameras, views[i], domain, masks[i],
                                          free, samples))
        del samples
    return current | (fit_voxels(evidence, current, steps, progress, cancel) & free)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("refinement cancelled; the segment is unchanged")
