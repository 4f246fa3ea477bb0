"""Benchmarks drawn from ground-truth instance masks, with scribbles a user could have made.

For a scene whose frames carry instance masks (`mask_path` in transforms.json, pixel value
= object id; the default scene's, or the test spheres'):
- reference view of an object: the training view where most of it is visible;
- positive scribble: the object's skeleton plus a line through it along its long axis,
  both kept INSET px inside its outline;
- negative scribbles: the same for each neighbour (an object whose pixels come within
  NEIGHBOUR_GAP px of it in the reference view), kept within NEGATIVE_BAND px of it;
- targets: every test view (index % test_every == 0) where at least MIN_TARGET_PIXELS
  pixels of it show.
Everything is deterministic: the same masks give the same benchmark.

`corrective_stroke` simulates an artist's next stroke (the interactive protocol of 2D
click benchmarks, with scribbles): on a view, the largest wrong region of a mask gets a
scribble, green where the object was missed, red where too much was taken, provided
the region is wide enough to paint inside (by default MIN_CORRECTION pixels left INSET
px inside its outline).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

from engine.errors import IsrfError
from engine.segment.strokes import mask_to_polylines

INSET = 3
NEIGHBOUR_GAP = 4
NEGATIVE_BAND = 20
MIN_TARGET_PIXELS = 20
MIN_CORRECTION = 20   # pixels a wrong region keeps INSET px inside its outline to be painted


def _inset(mask: np.ndarray, inset: int) -> np.ndarray:
    """The pixels of `mask` at least `inset` px (4-neighbour steps) inside its outline."""
    return ndimage.binary_erosion(mask, iterations=inset) if inset > 0 else mask


def scribble(mask: np.ndarray, inset: int = INSET) -> np.ndarray:
    """Skeleton + long-axis line of a region, kept `inset` px inside it (bool [H, W])."""
    inner = _inset(mask, inset)
    if inner.sum() < 4:
        inner = mask
    lines = skeletonize(inner)
    rows, cols = np.nonzero(inner)
    offsets = np.stack([cols, rows], 1) - np.array([cols.mean(), rows.mean()])
    axis = np.linalg.svd(offsets, full_matrices=False)[2][0] if len(offsets) > 1 else np.array([1.0, 0])
    on_axis = np.abs(offsets @ np.array([-axis[1], axis[0]])) < 0.5
    lines[rows[on_axis], cols[on_axis]] = True
    return lines & inner


def _stroke(view: int, painted: np.ndarray, label: str) -> dict:
    return {"camera": {"view": view}, "label": label, "radius": 1.0,
            "polylines": [[list(point) for point in line] for line in mask_to_polylines(painted)]}


def corrective_stroke(view: int, truth: np.ndarray, predicted: np.ndarray,
                      inset: int = INSET, min_pixels: int = MIN_CORRECTION
                      ) -> tuple[dict, int] | None:
    """The stroke (a JSON dict) an artist would paint on `view` next, given the object's
    true and predicted masks there (bool [H, W]), and how many pixels its region keeps
    `inset` px inside its outline (the size to compare views by). None when no wrong
    region keeps `min_pixels` there: slivers along an outline are left alone, as an
    artist would."""
    best = None
    for wrong, label in ((truth & ~predicted, "positive"), (predicted & ~truth, "negative")):
        regions, count = ndimage.label(wrong)
        if count == 0:
            continue
        # The union's erosion, counted per region, is each region's own: regions are
        # 4-connected components and the erosion's structure is the 4-neighbourhood.
        inner = ndimage.sum(_inset(wrong, inset), regions, range(1, count + 1))
        index = int(np.argmax(inner))
        if inner[index] >= min_pixels and (best is None or inner[index] > best[0]):
            best = (int(inner[index]), regions == index + 1, label)
    if best is None:
        return None
    inner, region, label = best
    return _stroke(view, scribble(region, inset), label), inner


def instance_masks(scene: Path) -> tuple[list[dict], list[np.ndarray]]:
    """The frames of the transforms.json scene in `scene`, and each frame's instance mask
    [H, W] (its `mask_path`; pixel value = object id, 0 = background)."""
    frames = json.loads((scene / "transforms.json").read_text())["frames"]
    if not all("mask_path" in frame for frame in frames):
        raise IsrfError(f"{scene}: every frame needs a mask_path (instance masks)")
    return frames, [np.asarray(Image.open(scene / frame["mask_path"])) for frame in frames]


def benchmark_from_masks(scene: Path, spec_dir: Path, test_every: int = 8,
                         checkpoint: Path | None = None) -> dict:
    """The benchmark spec (a dict, paths relative to `spec_dir`) of every object of the
    scene in `scene` (objects.json names them; else every non-zero mask id)."""
    frames, masks = instance_masks(scene)
    if (scene / "objects.json").is_file():
        objects = json.loads((scene / "objects.json").read_text())["objects"]
    else:
        ids = sorted(set(np.unique(np.stack(masks)).tolist()) - {0})
        objects = [{"name": f"object_{i}", "mask_id": i} for i in ids]
    test_ids = [i for i in range(len(frames)) if test_every and i % test_every == 0]
    train_ids = [i for i in range(len(frames)) if i not in test_ids]
    spec_objects = []
    for item in objects:
        value = item["mask_id"]
        reference = max(train_ids, key=lambda i: int((masks[i] == value).sum()))
        labels = masks[reference]
        own = labels == value
        strokes = [_stroke(reference, scribble(own), "positive")]
        near_object = ndimage.binary_dilation(own, iterations=NEIGHBOUR_GAP)
        band = ndimage.binary_dilation(own, iterations=NEGATIVE_BAND)
        for other in objects:
            other_mask = labels == other["mask_id"]
            if other is item or not (near_object & other_mask).any():
                continue
            lines = scribble(other_mask) & band
            if lines.any():
                strokes.append(_stroke(reference, lines, "negative"))
        targets = [{"view": i, "mask": frames[i]["mask_path"], "value": value}
                   for i in test_ids if (masks[i] == value).sum() >= MIN_TARGET_PIXELS]
        if targets:
            spec_objects.append({"name": item["name"], "strokes": strokes, "targets": targets})
    spec = {"format": "isrf-benchmark", "version": 1,
            "scene": os.path.relpath(scene.resolve(), spec_dir.resolve())}
    if checkpoint is not None:
        spec["checkpoint"] = os.path.relpath(Path(checkpoint).resolve(), spec_dir.resolve())
    spec["objects"] = spec_objects
    return spec
