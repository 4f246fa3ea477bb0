"""A segmentation session: named segments of one trained scene, built from strokes.

Each segment keeps two voxel sets over the session's `VoxelDomain`:
- `positive`: the union of the regions its positive strokes selected;
- `negative`: the union of the regions its negative (red) strokes selected;
and the k-means centres of both kinds of stroke. Its mask is positive minus negative,
except that a voxel in both goes to the side whose stroke features it is closer to: a
red stroke on the table next to a cup removes the table, not the cup's foot, even when
the table's region reached under it. Positive strokes never grow into negative voxels
that are closer to the negative centres, so what red strokes removed stays out.

A segment can also be refined with the photographs of many views (`refine`,
engine/segment/refine.py): its positive set gains the voxels the views' 2D masks agree
on, except what its red strokes removed; later strokes add to it and remove from it as
before.

Every stroke, refinement, reset, undo and redo is a step of an undo history (per
segment); the session file keeps the current state of every segment (masks, centres, the
strokes and refinements that made them, parameters), written atomically, and `replay`
rebuilds a segment from those steps alone to the same mask.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from engine.atomic import atomic_path
from engine.config import SegmentConfig
from engine.data.cameras import Cameras
from engine.errors import IsrfError
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, probe_rays, render_segment_image
from engine.segment.colour import viewing_direction, with_colour
from engine.segment.grow import warm_up as warm_up_growth
from engine.segment.kmeans import POINTS_PER_CENTRE, cluster_centres
from engine.segment.mask_edges import needs_image, visible_mask
from engine.segment.refine import refine_voxels
from engine.segment.region import StrokeView, select_region, stroke_centres
from engine.segment.strokes import Refine, Stroke, parse_step, parse_stroke, stroke_pixels
from engine.segment.voxels import VoxelDomain

SESSION_FORMAT = "isrf-segmentation"
SESSION_VERSION = 1
DOMAIN_MIN_ALPHA = 0.01
"""Voxels segmentation works on: occupied, and at least this one-step opacity. The faint
halo below it has features nobody trained (it barely renders) and would bridge objects."""
HIT_OPACITY = 0.5
"""Stroke pixels whose ray collects less opacity than this see background: ignored."""
PROBE_CHUNK = 16384
SCENE_SAMPLE = 200_000  # voxels the scene's k-means sees at most


def params_with(base: SegmentConfig, overrides: dict, source: str) -> SegmentConfig:
    """`base` with some keys replaced, validated as a SegmentConfig (errors name the key)."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SegmentConfig)}
    if unknown:
        raise IsrfError(f"{source}: unknown parameter(s) {', '.join(sorted(unknown))}")
    try:
        return SegmentConfig(**{**dataclasses.asdict(base), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        raise IsrfError(f"{source}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@dataclass(frozen=True)
class SegmentState:
    strokes: tuple[Stroke | Refine, ...]    # the steps that made it, in order
    positive: torch.Tensor            # [M] bool
    negative: torch.Tensor            # [M] bool
    positive_centres: torch.Tensor    # [Kp, D] unit length
    negative_centres: torch.Tensor    # [Kn, D] unit length

    @classmethod
    def empty(cls, size: int, dims: int, device) -> "SegmentState":
        no = torch.zeros(size, dtype=torch.bool, device=device)
        none = torch.zeros(0, dims, device=device)
        return cls((), no, no.clone(), none, none.clone())


@dataclass
class StrokeResult:
    segment: str
    label: str
    pixels: int          # pixels painted that see the scene
    seeds: int
    rounds: int
    region: int          # voxels the stroke's region holds
    mask: int            # voxels in the segment afterwards
    seconds: float


@dataclass
class RefineResult:
    segment: str
    views: list[int]     # dataset views whose photographs were fitted
    added: int           # voxels the segment gained (it never loses any)
    mask: int            # voxels in the segment afterwards
    seconds: float
    label: str = "refine"


@dataclass
class Photographs:
    """The dataset's photographs, for the steps that read them (refinement)."""
    image: Callable[[int], torch.Tensor]   # view -> [H, W, 3] float in [0, 1]
    train_views: list[int]                 # the views a refinement uses by default


@dataclass
class Segment:
    name: str
    params: SegmentConfig
    state: SegmentState
    undo_stack: list[SegmentState] = field(default_factory=list)
    redo_stack: list[SegmentState] = field(default_factory=list)

    def push(self, state: SegmentState) -> None:
        self.undo_stack.append(self.state)
        self.redo_stack.clear()
        self.state = state


class SegmentationSession:
    """Segments of one scene: its radiance field, feature field and dataset cameras."""

    def __init__(self, field: RadianceField, features: FeatureField, space: RaySpace,
                 cameras: Cameras, defaults: SegmentConfig | None = None,
                 photographs: Photographs | None = None):
        self.field = field
        self.photographs = photographs
        self.features = features
        self.space = space
        self.cameras = cameras
        self.defaults = defaults or SegmentConfig()
        self.colour_weight = self.defaults.colour_weight
        self.domain = VoxelDomain.of(field, features, DOMAIN_MIN_ALPHA, self.colour_weight,
                                     viewing_direction(cameras))
        self.segments: dict[str, Segment] = {}
        self._scene_centres: dict[int, torch.Tensor] = {}
        # now, not in the first stroke:
        self.scene_centres(self.defaults.scene_clusters)
        self.domain.neighbour_similarity()
        warm_up_growth(self.device, self.domain.features.dtype)

    @property
    def device(self) -> torch.device:
        return self.domain.device

    @property
    def dims(self) -> int:
        """Dimensions of the voxels' and strokes' features (colour included)."""
        return self.domain.features.shape[1]

    def fingerprint(self) -> str:
        """Identifies the domain (which voxels, in which order, and how their features are
        made): masks and stroke centres only fit this one."""
        digest = hashlib.sha256(np.asarray(self.domain.resolution, np.int64).tobytes())
        digest.update(self.domain.coords.cpu().numpy().tobytes())
        if self.colour_weight > 0:   # sessions from before colour keep their fingerprint
            digest.update(f"colour {self.colour_weight!r}".encode())
        return digest.hexdigest()[:16]

    def _check_session_params(self, params: SegmentConfig, source: str) -> SegmentConfig:
        if params.colour_weight != self.colour_weight:
            raise IsrfError(f"{source}: colour_weight is fixed for a session (the voxels' "
                            f"features are built with it, here {self.colour_weight}); set "
                            "[segment] colour_weight in the scene's config instead")
        return params

    # ----- segments -------------------------------------------------------------
    def add_segment(self, name: str, params: dict | None = None) -> Segment:
        self._check_name(name)
        source = f"segment {name!r}"
        segment = Segment(name, self._check_session_params(
            params_with(self.defaults, params or {}, source), source), self._empty_state())
        self.segments[name] = segment
        return segment

    def _check_name(self, name: str) -> None:
        if not name or not name.strip() or len(name) > 64 or "/" in name or "\\" in name:
            raise IsrfError(f"segment name {name!r}: use 1-64 characters, no slashes")
        if name in self.segments:
            raise IsrfError(f"segment {name!r} already exists")

    def segment(self, name: str) -> Segment:
        if name not in self.segments:
            known = ", ".join(self.segments) or "none yet"
            raise IsrfError(f"no segment named {name!r} (segments: {known})")
        return self.segments[name]

    def rename_segment(self, name: str, new_name: str) -> None:
        """Rename a segment, keeping its place in the order and its history."""
        segment = self.segment(name)
        if new_name == name:
            return
        self._check_name(new_name)
        segment.name = new_name
        self.segments = {new_name if key == name else key: value
                         for key, value in self.segments.items()}

    def set_params(self, name: str, overrides: dict) -> SegmentConfig:
        """Change a segment's parameters for its later strokes."""
        segment = self.segment(name)
        source = f"segment {name!r} params"
        segment.params = self._check_session_params(
            params_with(segment.params, overrides, source), source)
        return segment.params

    def remove_segment(self, name: str) -> None:
        self.segment(name)
        del self.segments[name]

    # ----- strokes --------------------------------------------------------------
    def stroke(self, name: str, stroke: Stroke | dict) -> StrokeResult:
        """Apply one stroke to a segment (created with the defaults if new)."""
        started = time.perf_counter()
        if not isinstance(stroke, Stroke):
            stroke = parse_stroke(stroke)
        segment = self.segments.get(name)
        base = segment.params if segment is not None else self.defaults
        source = f"{stroke.label} stroke params"
        params = self._check_session_params(params_with(base, stroke.params, source), source)
        view = self._stroke_view(stroke, params.clusters)
        centres = stroke_centres(view, params)
        rivals = self.scene_centres(params.scene_clusters)
        state = segment.state if segment is not None else self._empty_state()
        if stroke.label == "positive":
            blocked = self._closer_to(state.negative, state.negative_centres, centres)
            region = select_region(self.domain, view, centres, params, blocked, rivals)
            new = dataclasses.replace(
                state, strokes=state.strokes + (stroke,), positive=state.positive | region.voxels,
                positive_centres=torch.cat([state.positive_centres, centres]))
        else:
            region = select_region(self.domain, view, centres, params, scene_centres=rivals)
            new = dataclasses.replace(
                state, strokes=state.strokes + (stroke,), negative=state.negative | region.voxels,
                negative_centres=torch.cat([state.negative_centres, centres]))
        segment = segment or self.add_segment(name)   # only once the stroke has succeeded
        segment.push(new)
        return StrokeResult(name, stroke.label, view.pixels, region.seeds, region.rounds,
                            int(region.voxels.sum()), int(self.mask(name).sum()),
                            time.perf_counter() - started)

    def refine(self, name: str, step: Refine | dict | None = None, progress: bool = False,
               cancel: threading.Event | None = None) -> RefineResult:
        """Refine segment `name` with the photographs of dataset views (engine/segment/
        refine.py; `step` None: the defaults of `Refine`). Cancelling leaves it unchanged."""
        started = time.perf_counter()
        if step is None or isinstance(step, dict):
            step = parse_step({"refine": step or {}}, "refine")
        segment = self.segment(name)
        if self.photographs is None:
            raise IsrfError("refine: this session has no photographs (make it with the "
                            "scene's, as Scene.segmentation does)")
        views = step.views if step.views is not None else \
            self.photographs.train_views[::step.view_stride]
        missing = [v for v in views if v >= len(self.cameras)]
        if missing:
            raise IsrfError(f"refine: view {missing[0]} does not exist "
                            f"(the scene has {len(self.cameras)} views)")
        current = self.mask(name)
        if not current.any():
            raise IsrfError(f"refine: segment {name!r} has no voxels yet; paint a stroke first")
        state = segment.state
        fitted = refine_voxels(self.field, self.space, self.cameras, self.domain, current, views,
                               self.photographs.image, segment.params, step.steps, progress,
                               cancel)
        fitted &= ~(state.negative & ~current)   # what red strokes removed stays out
        step = step.model_copy(update={"views": list(views)})
        segment.push(dataclasses.replace(state, strokes=state.strokes + (step,), positive=fitted))
        return RefineResult(name, list(views), int((fitted & ~current).sum()),
                            int(self.mask(name).sum()), time.perf_counter() - started)

    def _empty_state(self) -> SegmentState:
        return SegmentState.empty(self.domain.size, self.dims, self.device)

    def scene_centres(self, k: int) -> torch.Tensor | None:
        """k-means centres [k, D] of the voxel features (the background model; cached)."""
        if k == 0 or self.domain.size == 0:
            return None
        if k not in self._scene_centres:
            sample = self.domain.features
            if len(sample) > SCENE_SAMPLE:   # an even spread of rows: deterministic
                sample = sample[torch.linspace(0, len(sample) - 1, SCENE_SAMPLE).long()]
            self._scene_centres[k] = F.normalize(cluster_centres(sample.float(), k), dim=-1)
        return self._scene_centres[k]

    def _stroke_view(self, stroke: Stroke, clusters: int) -> StrokeView:
        """What the stroke's rays see. Features, the costly part of rendering (two thirds
        of the time an 18k-pixel stroke's rays take on fern), only for an even spread of
        at most POINTS_PER_CENTRE x `clusters` of the rays that hit the scene: k-means
        trains on no more (faiss would sample that many itself), and the spread is
        deterministic, so replays give the same centres."""
        camera = stroke.camera.resolve(self.cameras)
        cols, rows = stroke_pixels(stroke, camera.width, camera.height)
        ids = torch.zeros(len(cols), dtype=torch.long, device=self.device)
        origins, dirs = camera.rays(ids, torch.from_numpy(cols).to(self.device),
                                    torch.from_numpy(rows).to(self.device))
        most = POINTS_PER_CENTRE * clusters
        hits = self._probe(origins, dirs, with_features=len(origins) <= most)  # small: one pass
        seen = torch.nonzero(hits["opacity"] > HIT_OPACITY)[:, 0]                 # [P]
        hit_rows = self.domain.rows_at(hits["hit"][seen], self.field)
        if "features" in hits:
            looks = {key: hits[key][seen] for key in ("features", "rgb") if key in hits}
        else:
            spread = seen
            if len(seen) > most:
                spread = seen[torch.linspace(0, len(seen) - 1, most, device=self.device).long()]
            looks = self._probe(origins[spread], dirs[spread], with_features=True)
        features = with_colour(looks["features"], looks.get("rgb"), self.colour_weight)
        return StrokeView(len(seen), features, hit_rows[hit_rows >= 0].long())

    def _probe(self, origins: torch.Tensor, dirs: torch.Tensor, with_features: bool
               ) -> dict[str, torch.Tensor]:
        """probe_rays over rays [R, 3], PROBE_CHUNK rays at a time."""
        features = self.features if with_features else None
        colour = with_features and self.colour_weight > 0
        parts = [probe_rays(self.field, features, self.space, origins[i:i + PROBE_CHUNK],
                            dirs[i:i + PROBE_CHUNK], colour)
                 for i in range(0, len(origins), PROBE_CHUNK)]
        if not parts:   # no rays
            empty = {"opacity": origins.new_zeros(0), "hit": origins.new_zeros(0, 3)}
            if with_features:
                empty["features"] = origins.new_zeros(0, self.features.dims)
            if colour:
                empty["rgb"] = origins.new_zeros(0, 3)
            return empty
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

    def _closer_to(self, voxels: torch.Tensor, these: torch.Tensor, those: torch.Tensor
                   ) -> torch.Tensor:
        """The `voxels` [M] whose features are at least as close to centres `these` as to
        `those` (False elsewhere; all of `voxels` when `those` is empty)."""
        result = torch.zeros_like(voxels)
        rows = torch.nonzero(voxels)[:, 0]
        if len(rows) == 0 or len(these) == 0:
            return result
        features = self.domain.features[rows].float()
        near_these = (2 - 2 * features @ these.T).amin(1)
        near_those = (2 - 2 * features @ those.T).amin(1) if len(those) else torch.full_like(near_these, 5)
        result[rows[near_these <= near_those]] = True
        return result

    def mask(self, name: str) -> torch.Tensor:
        """The segment's voxels [M] bool (see the module docstring for the rule)."""
        state = self.segment(name).state
        overlap = state.positive & state.negative
        removed = (state.negative & ~overlap) | self._closer_to(
            overlap, state.negative_centres, state.positive_centres)
        return state.positive & ~removed

    def mask_grid(self, name: str) -> torch.Tensor:
        """The segment as a dense bool grid [X, Y, Z] on the field's grid."""
        return self.domain.to_grid(self.mask(name))

    # ----- history --------------------------------------------------------------
    def undo(self, name: str) -> bool:
        """Step back one stroke (or reset); False when there is nothing to undo."""
        segment = self.segment(name)
        if not segment.undo_stack:
            return False
        segment.redo_stack.append(segment.state)
        segment.state = segment.undo_stack.pop()
        return True

    def redo(self, name: str) -> bool:
        segment = self.segment(name)
        if not segment.redo_stack:
            return False
        segment.undo_stack.append(segment.state)
        segment.state = segment.redo_stack.pop()
        return True

    def reset(self, name: str) -> None:
        """Clear the segment's strokes and masks (undoable)."""
        segment = self.segment(name)
        segment.push(self._empty_state())

    def replay(self, name: str) -> list[StrokeResult | RefineResult]:
        """Rebuild a segment from its strokes and refinements alone (its history is cleared)."""
        segment = self.segment(name)
        steps = segment.state.strokes
        segment.state = self._empty_state()
        segment.undo_stack.clear()
        segment.redo_stack.clear()
        results = [self.refine(name, step) if isinstance(step, Refine) else self.stroke(name, step)
                   for step in steps]
        segment.undo_stack.clear()
        return results

    # ----- images ---------------------------------------------------------------
    def render(self, name: str, camera: Cameras, index: int = 0, scene_rgb: bool = False
               ) -> dict[str, torch.Tensor]:
        """Camera `index` of `camera`: the segment alone (rgb [H, W, 3], opacity [H, W],
        alpha exactly 0 outside it), its visible share of the scene (visible [H, W]) and,
        when asked for, the whole scene's colour (scene_rgb [H, W, 3])."""
        return render_segment_image(self.field, self.space, camera, index, self.mask_grid(name),
                                    scene_rgb=scene_rgb)

    def mask_image(self, name: str, camera: Cameras, index: int = 0, occlusion: bool = True,
                   image: torch.Tensor | None = None) -> np.ndarray:
        """A 2D mask [H, W] bool. occlusion: where the segment is what the camera sees (its
        share of the rendered scene > mask_opacity, with edges that follow the image's);
        else where the segment alone renders opaque (accumulated opacity of the masked
        field > mask_opacity). image: the photograph this camera took ([H, W, 3] float in
        [0, 1]) when there is one; without it the edges and colours are the field's render's."""
        follow = occlusion and image is None and needs_image(self.segment(name).params)
        rendered = self.render(name, camera, index, scene_rgb=follow)
        return self.mask_from_render(name, rendered, occlusion, image)

    def mask_from_render(self, name: str, rendered: dict[str, torch.Tensor], occlusion: bool = True,
                         image: torch.Tensor | None = None) -> np.ndarray:
        """`mask_image` from a `render` of the segment already made (see there)."""
        params = self.segment(name).params
        if not occlusion:   # occluded parts are in this mask: the image shows none of their edges
            return (rendered["opacity"] > params.mask_opacity).cpu().numpy()
        if image is None and needs_image(params):
            if "scene_rgb" not in rendered:
                raise IsrfError("masks follow an image: give the camera's photograph, or "
                                "a render made with scene_rgb=True")
            image = rendered["scene_rgb"]
        return visible_mask(rendered["visible"], image, params)

    # ----- files ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write every segment's current state to one .npz file (atomically)."""
        path = Path(path)
        meta = {"format": SESSION_FORMAT, "version": SESSION_VERSION,
                "domain": {"size": self.domain.size, "resolution": self.domain.resolution,
                           "colour_weight": self.colour_weight, "fingerprint": self.fingerprint()},
                "defaults": dataclasses.asdict(self.defaults), "segments": []}
        arrays = {}
        for i, segment in enumerate(self.segments.values()):
            state = segment.state
            meta["segments"].append({"name": segment.name, "params": dataclasses.asdict(segment.params),
                                     "strokes": [s.to_dict() for s in state.strokes]})
            arrays[f"positive_{i}"] = np.packbits(state.positive.cpu().numpy())
            arrays[f"negative_{i}"] = np.packbits(state.negative.cpu().numpy())
            arrays[f"positive_centres_{i}"] = state.positive_centres.cpu().numpy()
            arrays[f"negative_centres_{i}"] = state.negative_centres.cpu().numpy()
        with atomic_path(path) as temp:
            with open(temp, "wb") as handle:
                np.savez_compressed(handle, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                    **arrays)
        return path

    def load(self, path: str | Path) -> None:
        """Replace this session's segments by those saved in `path` (same field only)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as content:
                meta = json.loads(content["meta"].tobytes().decode())
                arrays = {key: content[key] for key in content.files if key != "meta"}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            raise IsrfError(f"{path}: not a readable segmentation session ({error})") from None
        if meta.get("format") != SESSION_FORMAT or meta.get("version") != SESSION_VERSION:
            raise IsrfError(f"{path}: not a segmentation session of version {SESSION_VERSION}")
        saved_weight = meta["domain"].get("colour_weight", 0.0)
        if saved_weight != self.colour_weight:
            raise IsrfError(f"{path}: saved with [segment] colour_weight {saved_weight}, this "
                            f"session uses {self.colour_weight} (set it to match)")
        if meta["domain"]["fingerprint"] != self.fingerprint():
            raise IsrfError(f"{path}: saved for another trained field (its voxels differ)")
        segments = {}
        size, dims = self.domain.size, self.dims
        for i, saved in enumerate(meta["segments"]):
            source = f"{path}: segment {saved.get('name')!r}"
            try:
                unpack = lambda key: torch.from_numpy(  # noqa: E731
                    np.unpackbits(arrays[key], count=size).astype(bool)).to(self.device)
                centres = lambda key: torch.from_numpy(arrays[key]).float().reshape(-1, dims).to(self.device)  # noqa: E731
                state = SegmentState(
                    tuple(parse_step(s, f"{source} stroke") for s in saved["strokes"]),
                    unpack(f"positive_{i}"), unpack(f"negative_{i}"),
                    centres(f"positive_centres_{i}"), centres(f"negative_centres_{i}"))
            except (KeyError, ValueError, RuntimeError) as error:
                raise IsrfError(f"{source}: damaged ({error})") from None
            params = params_with(SegmentConfig(), saved["params"], f"{source} params")
            segments[saved["name"]] = Segment(saved["name"], params, state)
        self.segments = segments
