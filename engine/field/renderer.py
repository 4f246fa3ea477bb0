"""Volume rendering of a `RadianceField` along world rays, in any of the three spaces.

Per batch of R rays: map rays into the field's space, skip the empty space before and
after the occupied voxels (`skipping`), march S samples per ray (a dense [R, S] layout,
invalid entries masked; renders march in windows and stop rays that are already opaque,
`trace`), keep the M samples that are inside an occupied voxel, evaluate density there,
turn it into per-sample weights with an exclusive cumsum along each ray, evaluate colour
only where the weight matters, and sum per ray with `index_add` (torch's own op; no
torch_scatter). The feature field is rendered with the same weights
(`render_feature_rays`). 1-D gathers use `index_select`, about 6x faster than `[]` on CPU.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.data.posed_images import PosedImages
from engine.field import skipping, spaces
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField

FAR_UNBOUNDED = 1e4  # contracted scenes: the outer shell's samples end here (world units)
FEATURE_CHUNK = 1 << 18  # samples whose features a stroke probe looks up at once
WINDOW = 64  # steps marched at once before rays that are already opaque stop (`trace`)
PREVIEW_STEP = 2.0  # previews step twice as far: a preview pixel is >= 2 full-size pixels wide
RENDER_CHUNK = 4096  # rays per chunk of an image render: 30% faster than 16384 on 2 CPU cores
                    # (the [rays, samples] arrays stay in cache; bench_serve.py, 2026-12-06)


@dataclass
class RaySpace:
    """What the renderer needs to know about a scene's space (not its images)."""
    kind: str                                   # bounded | ndc | contracted
    background: tuple[float, float, float] | None   # None: the field's `Environment`
    near: float = 0.0
    ndc_intrinsics: tuple[float, float, float, float] | None = None

    @classmethod
    def of(cls, scene: PosedImages) -> "RaySpace":
        background = None if scene.background is None else tuple(scene.background)
        return cls(scene.space, background, scene.near, scene.ndc_intrinsics)


@dataclass
class Samples:
    points: torch.Tensor     # [M, 3] in the field's space
    ray_index: torch.Tensor  # [M] long, sorted (unless marched in windows: `trace`)
    flat_index: torch.Tensor # [M] long, position in the dense [R, S] layout
    interval: torch.Tensor   # [M] segment length in final-grid voxels
    depth: torch.Tensor      # [M] distance along the (space) ray
    position: torch.Tensor   # [M] distance along the ray in the field's space, in final-grid
                             #     voxels (contracted: along the contracted path)
    shape: tuple[int, int]   # (R, S)


def _march(t_start, t_end, step: float, jitter: bool):
    """Uniform steps of `step` from t_start to t_end [R] -> t [R, S], valid [R, S]."""
    span = (t_end - t_start).clamp_min(0)
    count = max(1, int(torch.ceil(span.max() / step).item())) if len(span) else 1
    offsets = torch.arange(count, device=t_start.device, dtype=t_start.dtype)[None]
    if jitter:
        offsets = offsets + torch.rand_like(t_start)[:, None]
    t = t_start[:, None] + offsets * step                      # [R, S]
    return t, t < t_end[:, None]


def _field_rays(field: RadianceField, space: RaySpace, origins, dirs, grid,
                step_scale: float = 1.0):
    """World rays [R, 3] -> the field space's origins, unit directions [R, 3], and the
    part [t_start, t_end] [R] worth sampling (empty space skipped; see `skipping`).

    t_start stays on the lattice t_in + k * step of the unskipped march, so skipping
    changes no sample's position."""
    step = field.config.stepsize * field.voxel_size * step_scale
    if space.kind == "ndc":
        origins, dirs = spaces.ndc_rays(origins, dirs, space.ndc_intrinsics)
    unit = F.normalize(dirs, dim=-1)
    t_in, t_out = spaces.ray_box(origins, unit, field.box_min, field.box_max)
    if space.kind == "ndc":  # the NDC ray runs from the near plane (0) to infinity (|d|)
        t_in, t_out = t_in.clamp_min(0), torch.minimum(t_out, dirs.norm(dim=-1))
    else:
        t_in = t_in.clamp_min(space.near)
    start, end = skipping.occupied_span(field, origins, unit, t_in, t_out, grid)
    start = t_in + torch.floor((start - t_in) / step) * step
    return origins, unit, start, end, step


def _straight_samples(field, origins, unit, t, valid, keep, interval: float) -> Samples:
    """The samples origins + t * unit [R, S] of straight rays that are valid and in a set
    voxel of `keep` (None: occupancy); points are made only for those kept."""
    R, S = t.shape
    flat = torch.nonzero((valid & field.occupied_along(origins, unit, t, keep)).reshape(-1))[:, 0]
    ray = flat // S
    depth = t.reshape(-1).index_select(0, flat)
    points = torch.addcmul(origins.index_select(0, ray), unit.index_select(0, ray), depth[:, None])
    return Samples(points, ray, flat, torch.full_like(depth, interval), depth,
                   depth / float(field.final_voxel_size), (R, S))


def _contracted_kept(field, points, t, valid, keep, interval, position) -> Samples:
    """The samples at points [R, S, 3] (contracted space) that are valid and in a set
    voxel of `keep` (None: occupancy); interval, position [R, S] per sample."""
    R, S = t.shape
    flat = torch.nonzero(valid.reshape(-1))[:, 0]
    candidates = points.reshape(-1, 3)[flat]
    occupied = field.occupied(candidates, keep)
    flat, kept = flat[occupied], candidates[occupied]
    return Samples(kept, flat // S, flat, interval.reshape(-1)[flat], t.reshape(-1)[flat],
                   position.reshape(-1)[flat], (R, S))


def sample_rays(field: RadianceField, space: RaySpace, origins, dirs, jitter: bool,
                keep: torch.Tensor | None = None) -> Samples:
    """Sample points along rays [R, 3] (world) in the field's space, all at once (sorted
    by ray, then along it: what training's losses need).

    keep: a bool grid [X, Y, Z] (a segment's voxels); samples whose nearest voxel is not
    in it are dropped, so everything outside has alpha exactly 0. None: the occupancy."""
    base = float(field.final_voxel_size)
    if space.kind == "contracted":
        step = field.config.stepsize * field.voxel_size
        points, t, valid, interval = _contracted_samples(field, space, origins,
                                                         F.normalize(dirs, dim=-1), step, jitter)
        return _contracted_kept(field, points, t, valid, keep, interval,
                                interval.cumsum(1) - interval)
    origins, unit, start, end, step = _field_rays(field, space, origins, dirs,
                                                  field.occupancy if keep is None else keep)
    t, valid = _march(start, end, step, jitter)
    return _straight_samples(field, origins, unit, t, valid, keep, step / base)


@dataclass
class Traced:
    samples: Samples
    weights: torch.Tensor        # [M] rendering weight of each sample
    transmittance: torch.Tensor  # [R] light that passes each ray


def trace(field: RadianceField, space: RaySpace, origins: torch.Tensor, dirs: torch.Tensor,
          jitter: bool = False, keep: torch.Tensor | None = None, early_stop: bool = False,
          step_scale: float = 1.0) -> Traced:
    """The one ray-marching core: samples along world rays [R, 3] and their weights.

    early_stop (renders, probes; never training, whose losses want every sample in
    order): march WINDOW steps at a time and stop each ray once less than the weight
    threshold of light is left, i.e. once nothing behind could show. Samples then come
    window by window (not sorted by ray), in a dense layout of R x (the windows' widths).
    step_scale (with early_stop): steps that many times the configured step (previews)."""
    if not early_stop or space.kind == "contracted":
        samples = sample_rays(field, space, origins, dirs, jitter, keep)
        return Traced(samples, *ray_weights(field, samples))
    base = float(field.final_voxel_size)
    origins, unit, start, end, step = _field_rays(field, space, origins, dirs,
                                                  field.occupancy if keep is None else keep,
                                                  step_scale)
    R = len(origins)
    depth_before = torch.zeros(R, device=origins.device)      # optical depth so far [R]
    parts = []
    marched, columns = 0, 0       # steps marched so far; width of the dense layout so far
    active = torch.nonzero(start < end)[:, 0]
    while len(active):
        t_from = start.index_select(0, active) + marched * step
        t_to = torch.minimum(t_from + WINDOW * step, end.index_select(0, active))
        t, valid = _march(t_from, t_to, step, jitter)
        window = _straight_samples(field, origins.index_select(0, active),
                                   unit.index_select(0, active), t, valid, keep,
                                   step / base)
        width = t.shape[1]
        tau = field.sigma(window.points) * window.interval                    # [m]
        dense = torch.zeros(len(active) * width, device=tau.device).index_put(
            (window.flat_index,), tau).reshape(len(active), width)
        through = dense.cumsum(1) + depth_before[active, None]
        exclusive = (through - dense).reshape(-1).index_select(0, window.flat_index)
        weights = (1 - torch.exp(-tau)) * torch.exp(-exclusive)
        parts.append((window, active.index_select(0, window.ray_index),
                      columns + window.flat_index % width,
                      weights))
        depth_before[active] = through[:, -1]
        marched, columns = marched + WINDOW, columns + width
        alive = (torch.exp(-depth_before.index_select(0, active)) > field.config.weight_threshold) & (
            start.index_select(0, active) + marched * step < end.index_select(0, active))
        active = active[alive]
    if not parts:  # every ray missed the occupied voxels
        none = origins.new_zeros(0)
        index = torch.zeros(0, dtype=torch.long, device=origins.device)
        return Traced(Samples(origins[:0], index, index, none, none, none, (R, 1)), none,
                      torch.ones(R, device=origins.device))
    ray = torch.cat([p[1] for p in parts])
    column = torch.cat([p[2] for p in parts])
    samples = Samples(torch.cat([p[0].points for p in parts]), ray, ray * columns + column,
                      torch.cat([p[0].interval for p in parts]),
                      torch.cat([p[0].depth for p in parts]),
                      torch.cat([p[0].position for p in parts]), (R, columns))
    return Traced(samples, torch.cat([p[3] for p in parts]), torch.exp(-depth_before))


def _contracted_samples(field, space, origins, unit, step, jitter):
    """Uniform steps inside the unit cube, then samples uniform in 1/t out to infinity."""
    ones = torch.ones(3, device=origins.device)
    t_in, t_exit = spaces.ray_box(origins, unit, -ones, ones)
    t_in = t_in.clamp_min(space.near)
    t_exit = torch.maximum(t_exit, t_in)
    t_inner, valid_inner = _march(t_in, t_exit, step, jitter)
    inner = origins[:, None] + unit[:, None] * t_inner[..., None]
    shell = field.config.unbounded_samples
    fraction = (torch.arange(shell, device=origins.device) + 1.0) / shell   # (0, 1]
    inv = 1 / t_exit.clamp_min(1e-6)
    t_outer = 1 / (inv[:, None] * (1 - fraction) + fraction / FAR_UNBOUNDED)
    outer = origins[:, None] + unit[:, None] * t_outer[..., None]
    points = spaces.contract(torch.cat([inner, outer], 1))          # [R, S, 3]
    t = torch.cat([t_inner, t_outer], 1)
    valid = torch.cat([valid_inner, torch.ones_like(t_outer, dtype=torch.bool)], 1)
    gaps = (points[:, 1:] - points[:, :-1]).norm(dim=-1)
    interval = torch.cat([gaps, gaps[:, -1:]], 1) / float(field.final_voxel_size)
    return points, t, valid, interval


def ray_weights(field: RadianceField, samples: Samples) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendering weight of every sample [M] and the light that passes each ray [R]."""
    R, S = samples.shape
    tau = field.sigma(samples.points) * samples.interval            # optical depth [M]
    dense = torch.zeros(R * S, device=tau.device, dtype=tau.dtype).index_put(
        (samples.flat_index,), tau).reshape(R, S)
    through = dense.cumsum(1)                                      # inclusive, per ray
    exclusive = (through - dense).reshape(-1).index_select(0, samples.flat_index)
    weights = (1 - torch.exp(-tau)) * torch.exp(-exclusive)
    return weights, torch.exp(-through[:, -1])


def background_colour(field: RadianceField, space: RaySpace, viewdirs: torch.Tensor
                      ) -> torch.Tensor:
    """What rays [R] see behind the scene: the space's colour [3], or the field's learnt
    environment in each ray's direction [R, 3] (viewdirs: unit world directions)."""
    if space.background is None:
        if field.environment is None:
            raise ValueError("the scene's background is learnt but the field has no environment")
        return field.environment(viewdirs)
    return torch.tensor(space.background, device=viewdirs.device)


def composite(field: RadianceField, samples: Samples, viewdirs: torch.Tensor,
              background: torch.Tensor,   # [3] or per ray [R, 3]
              weighted: tuple[torch.Tensor, torch.Tensor] | None = None,
              surface: bool = False) -> dict[str, torch.Tensor]:
    """Alpha-composite samples into per-ray colour [R, 3], depth [R], opacity [R].

    Also returns, for the K samples whose colour was evaluated, their colour [K, 3],
    weight [K] and ray index [K]. weighted: `ray_weights(field, samples)` when the caller
    already has it (the density lookups are most of a render's cost).

    surface (previews): colour each ray once, at its sample where the accumulated weight
    passes half the ray's opacity, times the opacity. On the default scene this is
    39 dB from the full composite at a tenth of the colour lookups (docs/serve.md).
    """
    R, _ = samples.shape
    weights, transmittance = weighted if weighted is not None else ray_weights(field, samples)
    if surface:
        visible = _surface_samples(samples, weights, 1 - transmittance)
        w = (1 - transmittance).index_select(0, samples.ray_index.index_select(0, visible))
    else:
        visible = torch.nonzero(weights.detach() > field.config.weight_threshold)[:, 0]
        w = weights.index_select(0, visible)
    ray = samples.ray_index.index_select(0, visible)
    rgb = field.rgb(samples.points.index_select(0, visible), viewdirs, ray)
    color = torch.zeros(R, 3, device=w.device).index_add(0, ray, w[:, None] * rgb)
    color = color + transmittance[:, None] * background
    depth = torch.zeros(R, device=w.device).index_add(0, samples.ray_index,
                                                      weights * samples.depth)
    return {"rgb": color, "depth": depth, "opacity": 1 - transmittance,
            # per visible sample, for losses that supervise samples directly
            "sample_rgb": rgb, "sample_weight": w, "sample_ray": ray}


def _surface_samples(samples: Samples, weights: torch.Tensor, opacity: torch.Tensor
                     ) -> torch.Tensor:
    """Index [K] of each ray's sample where its accumulated weight passes opacity / 2
    (rays with no samples have none)."""
    R, S = samples.shape
    dense = torch.zeros(R * S, device=weights.device).index_put(
        (samples.flat_index,), weights).reshape(R, S)
    column = (dense.cumsum(1) < opacity[:, None] / 2).sum(1).clamp_max(S - 1)     # [R]
    chosen = samples.ray_index * S + column.index_select(0, samples.ray_index)   # [M]
    return torch.nonzero(samples.flat_index == chosen)[:, 0]


def render_rays(field: RadianceField, space: RaySpace, origins: torch.Tensor,
                dirs: torch.Tensor, jitter: bool = False, keep: torch.Tensor | None = None,
                early_stop: bool = False, preview: bool = False) -> dict[str, torch.Tensor]:
    """Render world rays origins/dirs [R, 3] -> rgb [R, 3], depth [R], opacity [R]; also
    the samples and the weight [M] of each (`composite` has the rest), for losses on
    them.

    keep: render only these voxels (bool grid [X, Y, Z]); see `sample_rays`.
    early_stop: see `trace` (images; not training).
    preview: a quick approximation while a view moves (implies early_stop): PREVIEW_STEP
    times the step, and `composite`'s surface colour."""
    traced = trace(field, space, origins, dirs, jitter, keep, early_stop or preview,
                   PREVIEW_STEP if preview else 1.0)
    viewdirs = F.normalize(dirs, dim=-1)
    background = background_colour(field, space, viewdirs)
    return {**composite(field, traced.samples, viewdirs, background,
                        (traced.weights, traced.transmittance), surface=preview),
            "samples": traced.samples, "weights": traced.weights}


def render_feature_rays(field: RadianceField, features: FeatureField, space: RaySpace,
                        origins: torch.Tensor, dirs: torch.Tensor, jitter: bool = False,
                        samples_per_ray: int = 0) -> dict[str, torch.Tensor]:
    """Render the feature field along world rays [R, 3] -> features [R, D], opacity [R].

    The radiance field only supplies the ray weights (no gradient flows into it); samples
    below the colour's weight threshold are skipped, as for colour.

    samples_per_ray > 0 (training): instead of all samples of a ray (often 50 or more
    through soft surfaces), evaluate that many, drawn in proportion to their weights, and
    take opacity x their mean: the same value in expectation, at a fraction of the cost."""
    with torch.no_grad():
        traced = trace(field, space, origins, dirs, jitter, early_stop=True)
        samples, weights, transmittance = traced.samples, traced.weights, traced.transmittance
        visible = weights > field.config.weight_threshold
        if samples_per_ray > 0:
            points, ray, w = _draw_by_weight(samples, weights * visible, samples_per_ray)
        else:
            points, ray, w = samples.points[visible], samples.ray_index[visible], weights[visible]
    values = features(field.normalize(points))                           # [K, D]
    out = torch.zeros(len(origins), features.dims, device=values.device)
    out = out.index_add(0, ray, w[:, None] * values) + transmittance[:, None] * features.background
    return {"features": out, "opacity": 1 - transmittance}


@torch.no_grad()
def probe_rays(field: RadianceField, features: FeatureField | None, space: RaySpace,
               origins: torch.Tensor, dirs: torch.Tensor, colour: bool = False
               ) -> dict[str, torch.Tensor]:
    """What a stroke's rays [R, 3] see: rendered features [R, D] (unless `features` is
    None) and, with `colour`, rendered colour "rgb" [R, 3] along with them; opacity [R],
    and the point each ray hits [R, 3] in the field's space (its sample of largest
    weight; rays that hit nothing get their last point, and opacity 0).

    Features are evaluated only where a sample's weight passes the colour's threshold (as
    in `render_feature_rays`), FEATURE_CHUNK samples at a time: in a cluttered
    forward-facing scene 16k stroke rays keep millions of samples, and a feature lookup
    holds about 1 KB of intermediates per sample."""
    traced = trace(field, space, origins, dirs, early_stop=True)
    samples, weights, transmittance = traced.samples, traced.weights, traced.transmittance
    R = len(origins)
    best = torch.full((R,), -1.0, device=origins.device).scatter_reduce(
        0, samples.ray_index, weights, reduce="amax")
    is_best = weights == best[samples.ray_index]
    hits = torch.zeros(R, 3, device=origins.device)
    hits[samples.ray_index[is_best]] = samples.points[is_best]
    seen = {"opacity": 1 - transmittance, "hit": hits}
    if features is None:
        return seen
    visible = torch.nonzero(weights > field.config.weight_threshold)[:, 0]
    rendered = torch.zeros(R, features.dims, device=origins.device)
    if colour:
        rgb = torch.zeros(R, 3, device=origins.device)
        viewdirs = F.normalize(dirs, dim=-1)
    for start in range(0, len(visible), FEATURE_CHUNK):
        chosen = visible[start:start + FEATURE_CHUNK]
        ray, w = samples.ray_index[chosen], weights[chosen, None]
        values = features(field.normalize(samples.points[chosen]))        # [C, D]
        rendered.index_add_(0, ray, w * values)
        if colour:
            rgb.index_add_(0, ray, w * field.rgb(samples.points[chosen], viewdirs, ray))
    rendered = rendered + transmittance[:, None] * features.background
    if not colour:
        return {**seen, "features": rendered}
    background = background_colour(field, space, viewdirs)
    return {**seen, "features": rendered, "rgb": rgb + transmittance[:, None] * background}


@torch.no_grad()
def render_segment_rays(field: RadianceField, space: RaySpace, origins: torch.Tensor,
                        dirs: torch.Tensor, keep: torch.Tensor, scene_rgb: bool = False,
                        preview: bool = False, alone: bool = True) -> dict[str, torch.Tensor]:
    """Render a segment (bool voxel grid `keep` [X, Y, Z]) along world rays [R, 3]:
    - rgb [R, 3], opacity [R]: the segment alone (alpha exactly 0 everywhere else);
    - visible [R]: the segment's share of the whole scene's render, i.e. the weight of its
      samples when everything else is in front of or behind it (occlusion counts);
    - scene_rgb [R, 3], scene_depth [R], scene_opacity [R], when asked for: the whole
      scene's render from the same samples.
    preview: see `render_rays`. alone=False: no rgb and opacity of the segment alone (an
    overlay needs only `visible`; the segment's own march is a third of the time)."""
    step = PREVIEW_STEP if preview else 1.0
    scene = trace(field, space, origins, dirs, early_stop=True, step_scale=step)
    inside = field.occupied(scene.samples.points, keep)
    visible = torch.zeros(len(origins), device=origins.device).index_add(
        0, scene.samples.ray_index[inside], scene.weights[inside])
    viewdirs = F.normalize(dirs, dim=-1)
    background = background_colour(field, space, viewdirs)
    result = {"visible": visible}
    if alone:  # marched again: behind what hides the segment, the scene's march stopped
        own = trace(field, space, origins, dirs, keep=keep, early_stop=True, step_scale=step)
        own = composite(field, own.samples, viewdirs, background,
                        (own.weights, own.transmittance), surface=preview)
        result.update(rgb=own["rgb"], opacity=own["opacity"])
    if scene_rgb:
        scene = composite(field, scene.samples, viewdirs, background,
                          (scene.weights, scene.transmittance), surface=preview)
        result.update(scene_rgb=scene["rgb"], scene_depth=scene["depth"],
                      scene_opacity=scene["opacity"])
    return result


def _draw_by_weight(samples: Samples, weights: torch.Tensor, count: int):
    """Per ray with any weight, `count` samples drawn (with replacement) in proportion to
    `weights` [M] -> points [K, 3], ray index [K], and each draw's share of its ray's
    weight (ray opacity / count) [K]."""
    R, S = samples.shape
    dense = torch.zeros(R * S, device=weights.device).index_put((samples.flat_index,), weights)
    dense = dense.reshape(R, S)
    total = dense.sum(1)
    rays = torch.nonzero(total > 0)[:, 0]                               # [R']
    if len(rays) == 0:
        empty = samples.points[:0]
        return empty, samples.ray_index[:0], weights[:0]
    picks = torch.multinomial(dense[rays], count, replacement=True)     # [R', count]
    lookup = torch.full((R * S,), -1, dtype=torch.long, device=weights.device)
    lookup[samples.flat_index] = torch.arange(len(samples.flat_index), device=weights.device)
    index = lookup[(rays[:, None] * S + picks).reshape(-1)]
    ray = rays.repeat_interleave(count)
    return samples.points[index], ray, (total[rays] / count).repeat_interleave(count)


def _render_in_chunks(render, cameras, cam_id: int, chunk: int, keys: tuple[str, ...]):
    origins, dirs = cameras.image_rays(cam_id)
    starts = range(0, len(origins), chunk)
    if origins.device.type == "cpu" and len(starts) > 1:
        # Most of a chunk's ops are too small for torch's own threads to fill the cores;
        # chunks side by side do (a 256x192 preview: 0.21 -> 0.15 s on 2 cores).
        with _chunk_pool() as pool:
            parts = list(pool.map(lambda i: render(origins[i:i + chunk], dirs[i:i + chunk]),
                                  starts))
    else:
        parts = [render(origins[i:i + chunk], dirs[i:i + chunk]) for i in starts]
    H, W = cameras.height, cameras.width
    return {key: torch.cat([p[key] for p in parts]).reshape(H, W, -1).squeeze(-1) for key in keys}


def _chunk_pool() -> ThreadPoolExecutor:
    """Threads that render chunks: as many as torch uses; each chunk's ops then run on one
    (grad mode is per thread, so the caller's no_grad is set again in each)."""
    threads = torch.get_num_threads()

    def start() -> None:
        torch.set_grad_enabled(False)
        torch.set_num_threads(1)   # per thread: no OpenMP team per chunk fighting the others
    return ThreadPoolExecutor(threads, thread_name_prefix="isrf-render", initializer=start)


@torch.no_grad()
def render_image(field: RadianceField, space: RaySpace, cameras, cam_id: int,
                 chunk: int = RENDER_CHUNK, preview: bool = False) -> dict[str, torch.Tensor]:
    """Render one camera's full image: rgb [H, W, 3], depth [H, W], opacity [H, W].
    preview: see `render_rays`."""
    return _render_in_chunks(
        lambda o, d: render_rays(field, space, o, d, early_stop=True, preview=preview),
        cameras, cam_id, chunk, ("rgb", "depth", "opacity"))


@torch.no_grad()
def render_segment_image(field: RadianceField, space: RaySpace, cameras, cam_id: int,
                         keep: torch.Tensor, chunk: int = RENDER_CHUNK, scene_rgb: bool = False,
                         preview: bool = False, alone: bool = True) -> dict[str, torch.Tensor]:
    """One camera's render of a segment: rgb [H, W, 3] and opacity [H, W] (with `alone`),
    visible [H, W] and, when asked for, scene_rgb [H, W, 3], scene_depth and
    scene_opacity [H, W] (see `render_segment_rays`)."""
    keys = (("rgb", "opacity") if alone else ()) + ("visible",) + (
        ("scene_rgb", "scene_depth", "scene_opacity") if scene_rgb else ())
    return _render_in_chunks(
        lambda o, d: render_segment_rays(field, space, o, d, keep, scene_rgb, preview, alone),
        cameras, cam_id, chunk, keys)


@torch.no_grad()
def render_feature_image(field: RadianceField, features: FeatureField, space: RaySpace, cameras,
                         cam_id: int, chunk: int = RENDER_CHUNK) -> dict[str, torch.Tensor]:
    """Render one camera's feature image: features [H, W, D], opacity [H, W]."""
    return _render_in_chunks(lambda o, d: render_feature_rays(field, features, space, o, d),
                             cameras, cam_id, chunk, ("features", "opacity"))
