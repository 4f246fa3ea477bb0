"""How much one more stroke per object fixes: the benchmark's strokes, then corrections.

The benchmark (benchmarks/default.json) scribbles each object on one reference view, as
NVOS does. An artist then looks at the result from other views and paints where it is
wrong. This script simulates that (engine/segment/auto_scribbles.py, `corrective_stroke`):
after the benchmark's strokes, each round looks at the object's mask on every view that
is no object's target (an artist orbits freely; the targets stay unseen), finds the
largest wrong region wide enough to paint inside, and scribbles it, green where the
object was missed, red where too much was taken. Objects with nothing wide
enough to paint get no stroke. Each round's target IoU is what `isrf eval` would report.

    .venv/bin/python scripts/bench_corrections.py [--rounds 1] [--inset 3] [--min-pixels 20]

Needs a scene whose frames carry instance masks and targets that name the object's id
(the default scene and its benchmark do). Results:
bench_results/corrections_inset<I>_min<P>.json, .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.errors import IsrfError  # noqa: E402
from engine.scene import Scene  # noqa: E402
from engine.segment.auto_scribbles import (INSET, MIN_CORRECTION, corrective_stroke,  # noqa: E402
                                           instance_masks)
from engine.segment.benchmark import load_benchmark, run_benchmark, score_targets  # noqa: E402
from engine.segment.strokes import parse_stroke  # noqa: E402


def correct(scene: Scene, item, masks: list[np.ndarray], views: list[int], inset: int,
            min_pixels: int) -> dict | None:
    """Paint the largest paintable wrong region over `views` for object `item`; returns
    what was painted, or None when nothing was wide enough."""
    value = item.targets[0].value
    best = None
    for view in views:
        found = corrective_stroke(view, masks[view] == value, scene.mask_image(item.name, view),
                                  inset, min_pixels)
        if found is not None and (best is None or found[1] > best[1]):
            best = found
    if best is None:
        return None
    stroke, inner = best
    scene.segmentation.stroke(item.name, parse_stroke(stroke))
    return {"view": stroke["camera"]["view"], "label": stroke["label"], "inner_pixels": inner}


def measure(scene: Scene, spec_path: Path, rounds: int, inset: int, min_pixels: int) -> dict:
    spec = load_benchmark(spec_path)
    scene_dir = (spec_path.parent / spec.scene).resolve()
    if any(t.value is None for item in spec.objects for t in item.targets):
        raise SystemExit("the targets need the object's instance id (`value`)")
    _, masks = instance_masks(scene_dir)
    targets = {t.view for item in spec.objects for t in item.targets}
    views = [v for v in range(len(masks)) if v not in targets]
    first = run_benchmark(scene, spec, spec_path.parent / spec.scene)   # leaves each object's segment
    objects = []
    for item, result in zip(tqdm(spec.objects, desc="corrections", unit="object"), first["objects"]):
        row = {"name": item.name, "iou": [round(100 * result["iou"], 1)], "strokes": []}
        for _ in range(rounds):
            painted = correct(scene, item, masks, views, inset, min_pixels)
            if painted is None:
                break
            row["strokes"].append(painted)
            rows = score_targets(scene, item, scene_dir)
            row["iou"].append(round(100 * float(np.mean([r["iou"] for r in rows])), 1))
        objects.append(row)
    means = [round(float(np.mean([o["iou"][min(r, len(o["iou"]) - 1)] for o in objects])), 1)
             for r in range(rounds + 1)]
    return {"rounds": rounds, "inset": inset, "min_pixels": min_pixels,
            "correction_views": views, "objects": objects, "mean_iou": means}


def markdown(result: dict) -> str:
    rounds = result["rounds"]
    head = ["object", "benchmark strokes"] + [f"+{r} correction{'s' * (r > 1)}" for r in range(1, rounds + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["objects"]:
        cells = [row["name"], str(row["iou"][0])]
        for r in range(1, rounds + 1):
            if r < len(row["iou"]):
                stroke = row["strokes"][r - 1]
                colour = "green" if stroke["label"] == "positive" else "red"
                cells.append(f"{row['iou'][r]} ({colour}, view {stroke['view']})")
            else:
                cells.append(f"{row['iou'][-1]} (nothing to paint)")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| mean | " + " | ".join(map(str, result["mean_iou"])) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--benchmark", type=Path, default=REPO / "benchmarks" / "default.json")
    parser.add_argument("--rounds", type=int, default=1, help="corrective strokes per object")
    parser.add_argument("--inset", type=int, default=INSET,
                        help="px a scribble keeps inside the wrong region's outline")
    parser.add_argument("--min-pixels", type=int, default=MIN_CORRECTION,
                        help="a wrong region is painted only if it keeps this many px inside the inset")
    parser.add_argument("--out", type=Path, default=REPO / "bench_results")
    args = parser.parse_args()
    if args.rounds < 1 or args.inset < 0 or args.min_pixels < 1:
        raise SystemExit("--rounds and --min-pixels must be at least 1, --inset at least 0")
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no checkpoint (run ./scripts/demo.sh first)")
    torch.set_grad_enabled(False)
    scene = Scene.from_checkpoint(args.checkpoint, "cpu")
    try:
        result = measure(scene, args.benchmark, args.rounds, args.inset, args.min_pixels)
    except IsrfError as error:
        raise SystemExit(str(error)) from None
    result = {"checkpoint": str(args.checkpoint), "benchmark": str(args.benchmark), **result}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"corrections_inset{args.inset}_min{args.min_pixels}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
