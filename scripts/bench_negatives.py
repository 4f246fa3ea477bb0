"""Red strokes on neighbours: does one ever lower the IoU of the object it protects?

For every object of a benchmark: its own strokes on a new segment, scored (3D IoU: masks
rendered from the voxel selection, `isrf eval`'s headline); then, one at a time, every
other object's first stroke painted red on the same segment, scored, and undone; then all
of them together. An artist paints red on what a selection took from a neighbour, so a red
stroke on the neighbour must never cut into the object itself (issue 30's target: no
object's IoU lower with any neighbour's red stroke).

Writes bench_results/negatives_<device>.json and .md.
Usage: .venv/bin/python scripts/bench_negatives.py [--checkpoint C] [--benchmark SPEC]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.scene import Scene  # noqa: E402
from engine.segment.benchmark import load_benchmark, score_targets  # noqa: E402
from engine.segment.strokes import Stroke  # noqa: E402

TOLERANCE = 0.001   # IoU changes smaller than this are rounding of the rendered masks


def iou(scene: Scene, item, scene_dir: Path) -> float:
    return float(np.mean([row["iou"] for row in score_targets(scene, item, scene_dir)]))


def measure(scene: Scene, spec, scene_dir: Path) -> list[dict]:
    session = scene.segmentation
    rows = []
    for item in tqdm(spec.objects, desc="objects", unit="object"):
        name = f"{item.name} (negatives)"
        session.add_segment(name, item.params)
        for stroke in item.strokes:
            session.stroke(name, stroke)
        scored = item.model_copy(update={"name": name})
        alone = iou(scene, scored, scene_dir)
        neighbours = [other for other in spec.objects if other.name != item.name
                      and isinstance(other.strokes[0], Stroke)]
        single = {}
        for other in neighbours:
            session.stroke(name, other.strokes[0].model_copy(update={"label": "negative"}))
            single[other.name] = iou(scene, scored, scene_dir)
            session.undo(name)
        for other in neighbours:
            session.stroke(name, other.strokes[0].model_copy(update={"label": "negative"}))
        together = iou(scene, scored, scene_dir)
        session.remove_segment(name)
        worst = min(single, key=single.get)
        rows.append({"object": item.name, "alone": alone, "single": single,
                     "worst_neighbour": worst, "worst": single[worst], "all": together,
                     "lowered": [n for n, v in single.items() if v < alone - TOLERANCE]
                     + (["all"] if together < alone - TOLERANCE else [])})
    return rows


def markdown(rows: list[dict], device: str) -> str:
    lines = ["| object | 3D IoU alone | lowest with one neighbour's red stroke | with all | lowered by |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['object']} | {100 * row['alone']:.1f} | {100 * row['worst']:.1f} "
                     f"({row['worst_neighbour']}) | {100 * row['all']:.1f} | "
                     f"{', '.join(row['lowered']) or 'none'} |")
    met = not any(row["lowered"] for row in rows)
    lines += ["", f"target (no object's IoU lower with a neighbour's red stroke): "
              f"{'met' if met else 'missed'}",
              f"{device}, {datetime.date.today().isoformat()}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--benchmark", type=Path, default=REPO / "benchmarks" / "default.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "bench_results")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no checkpoint (run ./scripts/demo.sh first)")
    torch.set_grad_enabled(False)
    spec = load_benchmark(args.benchmark)
    scene = Scene.from_checkpoint(args.checkpoint, args.device)
    rows = measure(scene, spec, args.benchmark.resolve().parent / spec.scene)
    report = markdown(rows, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"negatives_{args.device}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / f"negatives_{args.device}.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
