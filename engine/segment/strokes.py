"""Strokes: what an artist paints, validated, and rasterised with a round brush.

A stroke is painted in one camera: a dataset view (by index) or an explicit pinhole
camera. Its polylines are in continuous pixel coordinates of that camera: x to the right,
y down, pixel (col i, row j) covering [i, i+1) x [j, j+1) (engine/data/cameras.py). The
brush paints every pixel whose centre is nearer than `radius` pixels to a polyline.

JSON form (one stroke; `params` overrides the segment's parameters for this stroke only):

    {"camera": {"view": 3},
     "polylines": [[[12.5, 40.0], [30.0, 42.5], [51.0, 60.0]]],
     "radius": 3, "label": "positive", "params": {"seed_distance": 0.3}}

An explicit camera replaces {"view": 3} with
    {"intrinsics": [fx, fy, cx, cy], "c2w": [[...4 rows...]], "width": W, "height": H,
     "convention": "opencv"}
where c2w is camera-to-world in the scene frame the dataset cameras use, in the OpenCV
convention (looks down +Z, y down) or "opengl" (Blender's: looks down -Z, y up).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.data.cameras import OPENGL_TO_OPENCV, Cameras
from engine.errors import IsrfError

MAX_IMAGE_SIDE = 16384
MAX_POINTS = 100_000      # per stroke, over all polylines
MAX_REFINE_VIEWS = 4096
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrokeCamera(_Strict):
    view: Annotated[int, Field(ge=0, strict=True)] | None = None
    """Index of a dataset view (its camera and image size)."""
    intrinsics: tuple[Finite, Finite, Finite, Finite] | None = None
    """fx, fy, cx, cy in pixels (explicit camera)."""
    c2w: tuple[tuple[Finite, Finite, Finite, Finite], ...] | None = None
    """4 x 4 camera-to-world, scene frame (explicit camera)."""
    width: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE, strict=True)] | None = None
    height: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE, strict=True)] | None = None
    convention: Literal["opencv", "opengl"] = "opencv"
    frame: Literal["scene", "blender"] = "scene"
    """The world c2w is in: the scene frame the dataset cameras use, or Blender's world
    (engine/data/frames.py; `Scene.in_scene_frame` converts it before a session sees it)."""

    @model_validator(mode="after")
    def _one_kind(self) -> "StrokeCamera":
        explicit = (self.intrinsics, self.c2w, self.width, self.height)
        if self.view is not None:
            if any(value is not None for value in explicit):
                raise ValueError("give either view or intrinsics/c2w/width/height, not both")
            return self
        if any(value is None for value in explicit):
            raise ValueError("an explicit camera needs intrinsics, c2w, width and height")
        if len(self.c2w) != 4:
            raise ValueError("c2w must be a 4 x 4 matrix")
        if self.c2w[3] != (0.0, 0.0, 0.0, 1.0):
            raise ValueError("c2w's last row must be 0 0 0 1")
        if not (self.intrinsics[0] > 0 and self.intrinsics[1] > 0):
            raise ValueError("focal lengths (intrinsics[0:2]) must be positive")
        rotation = np.asarray(self.c2w)[:3, :3]
        if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-3):
            raise ValueError("c2w's rotation part must be orthonormal")
        return self

    def resolve(self, dataset: Cameras) -> Cameras:
        """This camera as a one-camera `Cameras` (dataset views are checked against the scene)."""
        if self.frame != "scene":
            raise IsrfError("stroke camera: a Blender-frame camera must be converted to the "
                            "scene frame first (Scene.in_scene_frame)")
        if self.view is not None:
            if self.view >= len(dataset):
                raise IsrfError(f"stroke camera: view {self.view} does not exist "
                                f"(the scene has {len(dataset)} views)")
            return dataset.subset([self.view])
        c2w = torch.tensor(self.c2w, dtype=torch.float32)
        if self.convention == "opengl":
            c2w = c2w @ OPENGL_TO_OPENCV
        return Cameras(c2w[None], torch.tensor([self.intrinsics], dtype=torch.float32),
                       torch.zeros(1, 4), self.width, self.height).to(dataset.c2w.device)


class Stroke(_Strict):
    camera: StrokeCamera
    polylines: list[list[tuple[Finite, Finite]]] = Field(min_length=1)
    """Each polyline: one or more (x, y) points, pixels (a single point paints a dot)."""
    radius: Annotated[float, Field(ge=1, le=256, allow_inf_nan=False)] = 3.0
    """Brush radius in pixels (at least 1: every point paints at least its own pixel;
    exactly 1 around a pixel centre paints that pixel alone)."""
    label: Literal["positive", "negative"] = "positive"
    params: dict[str, float | int] = Field(default_factory=dict)
    """Overrides of the segment's parameters for this stroke (SegmentConfig keys)."""

    @model_validator(mode="after")
    def _points(self) -> "Stroke":
        if any(len(line) == 0 for line in self.polylines):
            raise ValueError("a polyline needs at least one point")
        if sum(len(line) for line in self.polylines) > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS} points in one stroke")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=False)


class Refine(_Strict):
    """A history step that refines a segment's voxels with the photographs of dataset
    views (engine/segment/refine.py). JSON: {"refine": {"views": [1, 2, 5], "steps": 60}}."""
    views: list[Annotated[int, Field(ge=0, strict=True)]] | None = Field(
        default=None, min_length=1, max_length=MAX_REFINE_VIEWS)
    """Dataset views whose photographs are fitted (null: every `view_stride`-th training
    view; the saved step names the views it used)."""
    view_stride: Annotated[int, Field(ge=1, le=1000, strict=True)] = 3
    steps: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 60
    """Optimiser steps of the fit (the result changes little after about 40)."""

    def to_dict(self) -> dict:
        return {"refine": self.model_dump(mode="json")}


def parse_step(raw, source: str = "stroke") -> "Stroke | Refine":
    """A segment's history step: a stroke, or {"refine": {...}} (errors name the field)."""
    if isinstance(raw, dict) and "refine" in raw:
        if len(raw) > 1:
            extra = sorted(set(raw) - {"refine"})
            raise IsrfError(f"{source}: a refine step holds only 'refine' (not {', '.join(extra)})")
        try:
            return Refine.model_validate(raw["refine"] if raw["refine"] is not None else {})
        except ValidationError as error:
            raise IsrfError(describe_validation(error, f"{source}: refine")) from None
    return parse_stroke(raw, source)


def parse_stroke(raw, source: str = "stroke") -> Stroke:
    """Validate one stroke (a dict as in the module docstring); errors name the field."""
    try:
        return Stroke.model_validate(raw)
    except ValidationError as error:
        raise IsrfError(describe_validation(error, source)) from None


def describe_validation(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {key or '(top level)'}: {message}{more}"


def rasterize(polylines, radius: float, width: int, height: int) -> np.ndarray:
    """Paint polylines with a round brush -> bool [height, width].

    A pixel is painted when its centre (i + 0.5, j + 0.5) is nearer than `radius` to a segment
    of a polyline (a one-point polyline is a dot). Points outside the image are allowed;
    only the pixels inside it are painted."""
    painted = np.zeros((height, width), bool)
    for line in polylines:
        points = np.asarray(line, dtype=np.float64).reshape(-1, 2)
        starts, ends = points, points
        if len(points) > 1:
            starts, ends = points[:-1], points[1:]
        for a, b in zip(starts, ends):
            _paint_segment(painted, a, b, radius)
    return painted


def _paint_segment(painted: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """Paint the capsule of `radius` around segment a-b (only its bounding box is visited)."""
    height, width = painted.shape
    low = np.floor(np.minimum(a, b) - radius).astype(int)
    high = np.ceil(np.maximum(a, b) + radius).astype(int)
    x0, y0 = max(low[0], 0), max(low[1], 0)
    x1, y1 = min(high[0] + 1, width), min(high[1] + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    centres = np.stack([xs + 0.5, ys + 0.5], -1)                     # [h, w, 2]
    direction = b - a
    length2 = float(direction @ direction)
    t = 0.0 if length2 == 0 else np.clip(((centres - a) @ direction) / length2, 0, 1)
    nearest = a + np.asarray(t)[..., None] * direction
    inside = ((centres - nearest) ** 2).sum(-1) < radius * radius
    painted[y0:y1, x0:x1] |= inside


def stroke_pixels(stroke: Stroke, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows [P] of the pixels a stroke paints (row-major order)."""
    rows, cols = np.nonzero(rasterize(stroke.polylines, stroke.radius, width, height))
    if len(rows) == 0:
        raise IsrfError(f"{stroke.label} stroke: it paints no pixel of the {width}x{height} "
                        "image (all its points are outside)")
    return cols, rows


def mask_to_polylines(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """A painted bool image [H, W] as polylines that, with a radius of 1, paint exactly the
    same pixels (one per horizontal run of pixels): scribble PNGs become strokes."""
    lines = []
    for row in range(mask.shape[0]):
        padded = np.concatenate([[False], mask[row].astype(bool), [False]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])           # run starts, run ends
        for start, end in zip(edges[::2], edges[1::2]):
            y = row + 0.5
            lines.append([(start + 0.5, y), (end - 0.5, y)] if end - start > 1 else [(start + 0.5, y)])
    return lines


class SegmentStrokes(_Strict):
    name: str = Field(min_length=1, max_length=64)
    params: dict[str, float | int] = Field(default_factory=dict)
    strokes: list[Stroke] = Field(min_length=1)
    refine: Refine | None = None
    """After the strokes, refine the segment with the photographs of many views."""


class StrokesFile(_Strict):
    """`isrf segment --strokes FILE`: {"segments": [{"name": ..., "params": {...},
    "strokes": [stroke, ...], "refine": {...}}, ...]}, applied in order (`refine`
    optional: see `Refine`)."""
    segments: list[SegmentStrokes] = Field(min_length=1)


def load_json_file(path: str | Path, model: type[BaseModel], what: str):
    """Read a JSON file and validate it as `model`; every failure is one line naming it."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise IsrfError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IsrfError(f"{path}: not valid JSON: {error}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise IsrfError(describe_validation(error, str(path))) from None


def load_strokes_file(path: str | Path) -> StrokesFile:
    return load_json_file(path, StrokesFile, "strokes file")
