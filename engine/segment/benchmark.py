"""Segmentation benchmarks: strokes on reference views, ground-truth masks on target views.

The format is documented in docs/benchmark.md. In short, a JSON file:

    {"format": "isrf-benchmark", "version": 1,
     "scene": "../scenes/default",               # folder the image paths below are in
     "checkpoint": "../runs/default/checkpoint.pt",   # optional (or isrf eval --checkpoint)
     "demo_object": "checker_cube",              # optional: what isrf demo meshes
     "objects": [
       {"name": "checker_cube", "params": {},    # optional SegmentConfig overrides
        "strokes": [
          {"camera": {"view": 3}, "label": "positive", "radius": 2,
           "polylines": [[[x, y], ...], ...]},
          {"camera": {"view": 3}, "label": "negative", "scribble": "scribbles/neg.png"}],
        "targets": [{"view": 8, "mask": "masks/r_008.png", "value": 2}]}]}

A scribble is a PNG of the view's size whose non-zero pixels are the stroke (NVOS's
scribbles). A target mask is a PNG whose pixels equal to `value` are the object (null:
every non-zero pixel, for binary masks). Relative paths are from the spec's folder
(`scene`, `checkpoint`) or from `scene` (scribbles, masks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from engine.errors import IsrfError, where
from engine.segment.strokes import Refine, Stroke, StrokeCamera, load_json_file, mask_to_polylines

BENCHMARK_FORMAT = "isrf-benchmark"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScribbleStroke(_Strict):
    camera: StrokeCamera
    scribble: str
    """PNG (the camera's size): its non-zero pixels are painted."""
    label: Literal["positive", "negative"] = "positive"
    params: dict[str, float | int] = Field(default_factory=dict)


class Target(_Strict):
    view: Annotated[int, Field(ge=0, strict=True)]
    mask: str
    value: Annotated[int, Field(ge=0, le=65535, strict=True)] | None = None
    """The object's pixel value in `mask` (null: every non-zero pixel)."""


class BenchmarkObject(_Strict):
    name: str = Field(min_length=1, max_length=64)
    params: dict[str, float | int] = Field(default_factory=dict)
    strokes: list[Stroke | ScribbleStroke] = Field(min_length=1)
    refine: Refine | None = None
    """After the strokes, refine the segment with the photographs of many views."""
    targets: list[Target] = Field(min_length=1)


class Benchmark(_Strict):
    format: Literal["isrf-benchmark"]
    version: Literal[1]
    scene: str
    checkpoint: str | None = None
    objects: list[BenchmarkObject] = Field(min_length=1)
    demo_object: str | None = None
    """The object `isrf demo` refines and meshes (null: the first)."""

    def mesh_object(self, name: str | None = None) -> str:
        """`name` (e.g. isrf demo --object), else demo_object, else the first object;
        checked against the objects."""
        chosen = name or self.demo_object or self.objects[0].name
        names = [item.name for item in self.objects]
        if chosen not in names:
            raise IsrfError(f"benchmark: no object {chosen!r} (objects: {', '.join(names)})")
        return chosen


def load_benchmark(path: str | Path) -> Benchmark:
    return load_json_file(path, Benchmark, "benchmark file")


def read_png(path: Path, size: tuple[int, int], what: str) -> np.ndarray:
    """A single-channel PNG [H, W] (the first channel of colour ones), checked to be W x H."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image)
    except FileNotFoundError:
        raise IsrfError(f"{path}: {what} not found") from None
    except OSError as error:
        raise IsrfError(f"{path}: {what} is not a readable image ({error})") from None
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if pixels.shape != (size[1], size[0]):
        raise IsrfError(f"{path}: {what} is {pixels.shape[1]}x{pixels.shape[0]}, "
                        f"the view is {size[0]}x{size[1]}")
    return pixels


def scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU and pixel accuracy of a predicted bool mask against the truth (both [H, W])."""
    union = np.logical_or(predicted, truth).sum()
    iou = float(np.logical_and(predicted, truth).sum() / union) if union else 1.0
    return {"iou": iou, "accuracy": float((predicted == truth).mean())}


def run_benchmark(scene, spec: Benchmark, scene_dir: Path, progress: bool = True,
                  refine: bool = False) -> dict:
    """Segment every object of `spec` from its strokes in `scene` (engine.scene.Scene)
    and score its masks on the target views -> results (per target, per object, means).
    scene_dir: the folder the spec's image paths are in (its `scene`, relative to the spec).
    refine: refine every object after its strokes (an object's own `refine` always runs)."""
    scene_dir = Path(scene_dir).resolve()
    session = scene.segmentation
    results = []
    for item in tqdm(spec.objects, desc="objects", disable=not progress, unit="object"):
        name = item.name
        if name in session.segments:
            raise IsrfError(f"benchmark: object {name!r} appears twice")
        session.add_segment(name, item.params)
        latencies = []
        for number, stroke in enumerate(item.strokes, 1):
            with where(f"benchmark: object {name!r}, stroke {number}"):
                if isinstance(stroke, ScribbleStroke):
                    stroke = _scribble_as_stroke(stroke, scene_dir, session.cameras)
                latencies.append(session.stroke(name, stroke).seconds)
        row = {"name": name}
        if item.refine is not None or refine:
            row["refine_seconds"] = session.refine(name, item.refine).seconds
        rows = score_targets(scene, item, scene_dir)
        results.append({**row, **{key: _mean(r[key] for r in rows) for key in SCORES},
                        "stroke_seconds": latencies, "targets": rows})
    return {"objects": results,
            **{f"mean_{key}": _mean(r[key] for r in results) for key in SCORES}}


SCORES = ("iou", "accuracy", "iou_2d", "accuracy_2d")
"""iou, accuracy: of the 3D selection's masks (what its mesh and every new view show);
*_2d: of the same masks after the photo assists (`Scene.mask_image(photo_assist=True)`)."""


def score_targets(scene, item: BenchmarkObject, scene_dir: Path) -> list[dict]:
    """Scores of segment `item.name` on each of the object's target views -> a row per
    target: `iou`, `accuracy` of its mask rendered from the voxel selection (nothing read
    from the view's photograph) and `iou_2d`, `accuracy_2d` with the photo assists."""
    size = (scene.data.width, scene.data.height)
    session = scene.segmentation
    rows = []
    for target in item.targets:
        if target.view >= len(scene.data.names):
            raise IsrfError(f"benchmark: {item.name}: target view {target.view} does not exist")
        truth = read_png(scene_dir / target.mask, size, "target mask")
        truth = truth != 0 if target.value is None else truth == target.value
        # One render serves both masks (as Scene.mask_image makes each).
        rendered = session.render(item.name, session.cameras, target.view)
        selection = scores(session.mask_from_render(item.name, rendered), truth)
        assisted = scores(session.mask_from_render(
            item.name, rendered, image=scene.data.image_float(target.view), photo_assist=True),
            truth)
        rows.append({"view": target.view, **selection,
                     **{f"{key}_2d": value for key, value in assisted.items()}})
    return rows


def _scribble_as_stroke(item: ScribbleStroke, scene_dir: Path, cameras) -> Stroke:
    camera = item.camera.resolve(cameras)
    painted = read_png(scene_dir / item.scribble, (camera.width, camera.height), "scribble") != 0
    if not painted.any():
        raise IsrfError(f"{scene_dir / item.scribble}: the scribble paints no pixel")
    return Stroke(camera=item.camera, polylines=mask_to_polylines(painted), radius=1.0,
                  label=item.label, params=item.params)


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def format_table(results: dict) -> str:
    """One row per object: the 3D selection's IoU and accuracy, then the photo-assisted IoU."""
    lines = [f"{'object':<20} {'IoU 3D':>6} {'acc 3D':>6} {'IoU 2D':>6} {'views':>5} {'s/stroke':>8}"]
    for row in results["objects"]:
        seconds = np.mean(row["stroke_seconds"]) if row["stroke_seconds"] else float("nan")
        lines.append(f"{row['name']:<20} {100 * row['iou']:6.1f} {100 * row['accuracy']:6.1f} "
                     f"{100 * row['iou_2d']:6.1f} {len(row['targets']):5d} {seconds:8.2f}")
    lines.append(f"{'mean':<20} {100 * results['mean_iou']:6.1f} "
                 f"{100 * results['mean_accuracy']:6.1f} {100 * results['mean_iou_2d']:6.1f}")
    return "\n".join(lines)
