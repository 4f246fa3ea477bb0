"""From one stroke to a 3D region: ISRF's seeds and bilateral growth, plus a hit test.

1. The stroke's rendered features are clustered (k-means, faiss).
2. Voxels whose feature lies within `seed_distance` of a cluster centre are similar.
3. Beyond ISRF: of the similar voxels, only those connected (through similar voxels) to
   where the stroke's rays actually hit become seeds, so a look-alike object elsewhere in
   the scene is not selected by a stroke that never touched it.
4. Bilateral region growing from the seeds (grow.py), never into voxels further than
   `grow_distance` from every centre, nor into `blocked` voxels, until nothing changes
   or `max_growth` rounds have run.
Beyond ISRF, a background model: `rivals` are k-means centres of the whole scene's voxel
features that are unlike every stroke centre (further than `grow_distance`). A voxel
closer to a rival than to the stroke is something else, and is neither a seed nor grown
into. Where two objects touch, their voxels' features blend, and distance thresholds
alone let a region leak across; the comparison stops it at the contact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.config import SegmentConfig
from engine.errors import IsrfError
from engine.segment.grow import bilateral_grow, propagate
from engine.segment.kmeans import cluster_centres
from engine.segment.voxels import VoxelDomain


@dataclass
class StrokeView:
    """What a stroke's rays see (only rays that hit the scene)."""
    pixels: int              # P: the stroke's pixels whose rays hit the scene
    features: torch.Tensor   # [F, D] rendered features of F <= P of them (an even spread;
                             # see StrokeProbe.view)
    hit_rows: torch.Tensor   # [H] domain rows of the voxels the rays hit (H <= P)


@dataclass
class Region:
    voxels: torch.Tensor     # [M] bool
    seeds: int               # seed voxels
    rounds: int              # growth rounds run
    centres: int             # k-means centres used


def stroke_centres(view: StrokeView, params: SegmentConfig) -> torch.Tensor:
    """k-means centres [K, D] (unit length) of the stroke's rendered features."""
    if len(view.features) == 0 or len(view.hit_rows) == 0:
        raise IsrfError("the stroke touches no part of the scene (only empty background)")
    centres = cluster_centres(F.normalize(view.features.float(), dim=-1), params.clusters)
    return F.normalize(centres, dim=-1)


def select_region(domain: VoxelDomain, view: StrokeView, centres: torch.Tensor,
                  params: SegmentConfig, blocked: torch.Tensor | None = None,
                  scene_centres: torch.Tensor | None = None) -> Region:
    """The region [M] a stroke selects from its `centres` [K, D] (`stroke_centres`);
    `blocked` [M] voxels are never part of it. scene_centres [S, D]: k-means centres of
    all voxel features (the background model)."""
    centre_sets = [centres]
    if scene_centres is not None and len(scene_centres):
        unlike = (2 - 2 * scene_centres @ centres.T).amin(1) > params.grow_distance
        if unlike.any():
            centre_sets.append(scene_centres[unlike])                        # the rivals
    distance, *to_rivals = domain.nearest_distances(*centre_sets)            # [M] each
    free = torch.ones_like(distance, dtype=torch.bool) if blocked is None else ~blocked
    if to_rivals:
        free &= distance <= to_rivals[0]
    similar = (distance < params.seed_distance) & free
    hit = torch.zeros_like(similar)
    hit[view.hit_rows] = True
    near_hits = propagate(domain, hit, torch.ones_like(hit), params.hit_radius)
    seeds = propagate(domain, near_hits & similar, similar)
    seed_count = int(seeds.sum())
    if seed_count == 0:
        raise IsrfError("the stroke selected nothing: no voxel where it hits is within "
                        f"seed_distance {params.seed_distance} of its features (raise it)")
    allowed = (distance < params.grow_distance) & free
    voxels, rounds = bilateral_grow(domain, seeds, allowed, params.sigma_f, params.sigma_d,
                                    params.join, params.max_growth)
    return Region(voxels, seed_count, rounds, len(centres))
