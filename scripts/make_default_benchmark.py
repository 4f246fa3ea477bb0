"""Write the segmentation benchmark of the default scene (benchmarks/default.json).

Scribbles are drawn from the ground-truth masks the way a user would scribble
(engine/segment/auto_scribbles.py), so the benchmark needs no hand work and a re-run
gives the same file.

Usage: .venv/bin/python scripts/make_default_benchmark.py [--scene scenes/default]
       [--out benchmarks/default.json] [--checkpoint runs/default/checkpoint.pt]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.segment.auto_scribbles import benchmark_from_masks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=ROOT / "scenes" / "default")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "default.json")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--demo-object", default="checker_cube",
                        help="the object isrf demo refines and meshes")
    args = parser.parse_args()
    spec = benchmark_from_masks(args.scene, args.out.parent, checkpoint=args.checkpoint)
    objects = spec.pop("objects")
    spec.update(demo_object=args.demo_object, objects=objects)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"{args.out}: {len(spec['objects'])} objects, "
          f"{sum(len(o['strokes']) for o in spec['objects'])} strokes, "
          f"{sum(len(o['targets']) for o in spec['objects'])} target views")


if __name__ == "__main__":
    main()
