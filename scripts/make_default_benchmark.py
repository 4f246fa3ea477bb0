"""Write the segmentation benchmark of the default scene (benchmarks/default.json).

Scribbles are drawn automatically from the ground-truth masks, the way a user would
scribble, so the benchmark needs no hand work and can be regenerated exactly:
- reference view of an object: the training view where most of it is visible;
- positive scribble: the object's skeleton plus a line through it along its long axis,
  both kept 3 px inside its outline;
- negative scribbles: the same for each neighbour (an object or the table whose pixels
  come within 4 px of it in the reference view), kept within 20 px of the object;
- targets: every test view (index % 8 == 0) where at least 20 pixels of it show.

Usage: .venv/bin/python scripts/make_default_benchmark.py [--scene scenes/default]
       [--out benchmarks/default.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.segment.strokes import mask_to_polylines  # noqa: E402

TEST_EVERY = 8
INSET = 3          # scribbles stay this many pixels inside an outline
NEIGHBOUR_GAP = 4  # objects closer than this (px) in the reference view are neighbours
NEGATIVE_BAND = 20 # negative scribbles stay within this many pixels of the object
MIN_TARGET_PIXELS = 20


def scribble(mask: np.ndarray) -> np.ndarray:
    """Skeleton + long-axis line of a region, kept INSET px inside it (bool [H, W])."""
    inner = ndimage.binary_erosion(mask, iterations=INSET)
    if inner.sum() < 4:
        inner = mask
    lines = skeletonize(inner)
    rows, cols = np.nonzero(inner)
    centre = np.array([cols.mean(), rows.mean()])
    offsets = np.stack([cols, rows], 1) - centre
    axis = np.linalg.svd(offsets, full_matrices=False)[2][0] if len(offsets) > 1 else np.array([1.0, 0])
    across = offsets @ np.array([-axis[1], axis[0]])
    lines[rows[np.abs(across) < 0.5], cols[np.abs(across) < 0.5]] = True
    return lines & inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--scene", type=Path, default=root / "scenes" / "default")
    parser.add_argument("--out", type=Path, default=root / "benchmarks" / "default.json")
    args = parser.parse_args()
    objects = json.loads((args.scene / "objects.json").read_text())["objects"]
    frames = json.loads((args.scene / "transforms.json").read_text())["frames"]
    masks = [np.asarray(Image.open(args.scene / frame["mask_path"])) for frame in frames]
    test_ids = [i for i in range(len(frames)) if i % TEST_EVERY == 0]
    train_ids = [i for i in range(len(frames)) if i % TEST_EVERY != 0]
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
        spec_objects.append({"name": item["name"], "strokes": strokes, "targets": targets})
    spec = {"format": "isrf-benchmark", "version": 1,
            "scene": os.path.relpath(args.scene.resolve(), args.out.resolve().parent),
            "checkpoint": os.path.relpath((root / "runs" / "default" / "checkpoint.pt"),
                                          args.out.resolve().parent),
            "objects": spec_objects}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"{args.out}: {len(spec_objects)} objects, "
          f"{sum(len(o['strokes']) for o in spec_objects)} strokes, "
          f"{sum(len(o['targets']) for o in spec_objects)} target views")


def _stroke(view: int, painted: np.ndarray, label: str) -> dict:
    return {"camera": {"view": view}, "label": label, "radius": 1.0,
            "polylines": [[list(point) for point in line] for line in mask_to_polylines(painted)]}


if __name__ == "__main__":
    main()
