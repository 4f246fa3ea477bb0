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

This module runs the steps; the pieces live beside it: `history` (states and undo),
`probing` (what a stroke's rays see), `masks` (the voxel rule and 2D masks),
`session_file` (saving and loading).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.config import SegmentConfig
from engine.data.cameras import Cameras
from engine.errors import IsrfError
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_segment_image
from engine.segment.colour import viewing_direction
from engine.segment.grow import warm_up as warm_up_growth
from engine.segment.history import Segment, SegmentState, params_with
from engine.segment.kmeans import cluster_centres
from engine.segment.mask_edges import needs_image
from engine.segment.masks import closer_to, image_mask, voxel_mask
from engine.segment.probing import StrokeProbe
from engine.segment.refine import refine_voxels
from engine.segment.region import select_region, stroke_centres
from engine.segment.session_file import DomainKey, load_segments, save_segments
from engine.segment.strokes import Refine, Stroke, parse_step, parse_stroke
from engine.segment.voxels import VoxelDomain

DOMAIN_MIN_ALPHA = 0.01
"""Voxels segmentation works on: occupied, and at least this one-step opacity. The faint
halo below it has features nobody trained (it barely renders) and would bridge objects."""
SCENE_SAMPLE = 200_000  # voxels the scene's k-means sees at most


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
        self.probe = StrokeProbe(field, features, space, cameras, self.domain, self.colour_weight)
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
        view = self.probe.view(stroke, params.clusters)
        centres = stroke_centres(view, params)
        rivals = self.scene_centres(params.scene_clusters)
        state = segment.state if segment is not None else self._empty_state()
        if stroke.label == "positive":
            blocked = closer_to(self.domain.features, state.negative, state.negative_centres,
                                centres)
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

    def mask(self, name: str) -> torch.Tensor:
        """The segment's voxels [M] bool (see the module docstring for the rule)."""
        return voxel_mask(self.segment(name).state, self.domain.features)

    def mask_grid(self, name: str) -> torch.Tensor:
        """The segment as a dense bool grid [X, Y, Z] on the field's grid."""
        return self.domain.to_grid(self.mask(name))

    # ----- history --------------------------------------------------------------
    def undo(self, name: str) -> bool:
        """Step back one stroke (or reset); False when there is nothing to undo."""
        return self.segment(name).undo()

    def redo(self, name: str) -> bool:
        return self.segment(name).redo()

    def reset(self, name: str) -> None:
        """Clear the segment's strokes and masks (undoable)."""
        segment = self.segment(name)
        segment.push(self._empty_state())

    def replay(self, name: str) -> list[StrokeResult | RefineResult]:
        """Rebuild a segment from its strokes and refinements alone (its history is cleared)."""
        segment = self.segment(name)
        steps = segment.restart(self._empty_state())
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
                   image: torch.Tensor | None = None, photo_assist: bool = False) -> np.ndarray:
        """A 2D mask [H, W] bool of camera `index` (`masks.image_mask`). image: the
        photograph this camera took, for photo_assist; without it the field's render is
        the guide."""
        follow = photo_assist and occlusion and image is None and \
            needs_image(self.segment(name).params)
        rendered = self.render(name, camera, index, scene_rgb=follow)
        return self.mask_from_render(name, rendered, occlusion, image, photo_assist)

    def mask_from_render(self, name: str, rendered: dict[str, torch.Tensor], occlusion: bool = True,
                         image: torch.Tensor | None = None, photo_assist: bool = False
                         ) -> np.ndarray:
        """`mask_image` from a `render` of the segment already made (see there)."""
        return image_mask(rendered, self.segment(name).params, occlusion, image, photo_assist)

    # ----- files ----------------------------------------------------------------
    def _domain_key(self) -> DomainKey:
        return DomainKey(self.domain.size, tuple(self.domain.resolution), self.colour_weight,
                         self.fingerprint(), self.dims, self.device)

    def save(self, path: str | Path) -> Path:
        """Write every segment's current state to one .npz file (atomically)."""
        return save_segments(path, list(self.segments.values()), self.defaults, self._domain_key())

    def load(self, path: str | Path) -> None:
        """Replace this session's segments by those saved in `path` (same field only)."""
        self.segments = load_segments(path, self._domain_key())
