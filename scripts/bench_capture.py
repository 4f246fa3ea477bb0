"""A capture end to end, scored and pictured: the trained field's test PSNR, objects
segmented from strokes (scored against true masks when a benchmark spec has them), their
meshes, and pictures of it all for docs/.

    .venv/bin/python scripts/bench_capture.py --case room_posed \
        --checkpoint runs/room_posed/checkpoint.pt --benchmark benchmarks/room.json \
        --mesh ball --mesh monkey
    .venv/bin/python scripts/bench_capture.py --case fern_4 \
        --checkpoint runs/fern_4/checkpoint.pt --strokes benchmarks/fern_capture.json

Writes bench_results/capture.json and .md (one row per case), and
docs/images/capture_<case>_views.jpg (for a test view: the photo, the render, and the
segmented objects tinted on the render) and capture_<case>_meshes.jpg (the meshes seen
from three sides, scripts/render_meshes.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import save_rows  # noqa: E402  (scripts/ is on sys.path when run)

TINTS = ((0.95, 0.3, 0.2), (0.2, 0.6, 0.95), (0.3, 0.85, 0.3), (0.95, 0.8, 0.2))
TILE_HEIGHT = 300


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", required=True, help="the row's name (and the pictures')")
    parser.add_argument("--checkpoint", required=True, type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--benchmark", type=Path, help="an isrf-benchmark spec: strokes and true masks")
    source.add_argument("--strokes", type=Path, help="a strokes file (no true masks: pictures only)")
    parser.add_argument("--mesh", action="append", default=[],
                        help="an object to mesh and picture (repeat; default: every object)")
    parser.add_argument("--test-metrics", type=Path, default=None,
                        help="the checkpoint's test views' metrics.json, when already rendered "
                             "(scripts/bench_train.py writes one); default: render them")
    parser.add_argument("--view", type=int, default=None, help="the pictured view (default: the first test view)")
    parser.add_argument("--results", type=Path, default=REPO / "bench_results")
    parser.add_argument("--pictures", type=Path, default=REPO / "docs" / "images")
    return parser.parse_args()


def segment(scene, args) -> list[dict]:
    """Every object of the benchmark or strokes file segmented -> one row each."""
    if args.benchmark is not None:
        from engine.segment.benchmark import load_benchmark, run_benchmark

        spec = load_benchmark(args.benchmark)
        results = run_benchmark(scene, spec, args.benchmark.resolve().parent / spec.scene)
        return [{"name": o["name"], "iou": round(100 * o["iou"], 1),
                 "iou_2d": round(100 * o["iou_2d"], 1), "strokes": len(o["stroke_seconds"])}
                for o in results["objects"]]
    from engine.segment.strokes import load_strokes_file

    rows = []
    for item in load_strokes_file(args.strokes).segments:
        scene.segmentation.add_segment(item.name, item.params)
        for stroke in item.strokes:
            scene.segmentation.stroke(item.name, stroke)
        rows.append({"name": item.name, "strokes": len(item.strokes)})
    return rows


def views_picture(scene, view: int, names: list[str], out: Path) -> None:
    """photo | render | the objects tinted on the render, side by side."""
    photo = scene.data.image_float(view).numpy()
    render = scene.render(view)["rgb"].clamp(0, 1).cpu().numpy()
    tinted = render.copy()
    for name, tint in zip(names, TINTS * len(names)):
        mask = scene.mask_image(name, view)
        tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.asarray(tint)
    row = np.concatenate([photo, render, tinted], axis=1)
    picture = Image.fromarray(np.round(row * 255).astype(np.uint8))
    width = round(picture.width * TILE_HEIGHT / picture.height)
    picture.resize((width, TILE_HEIGHT), Image.Resampling.LANCZOS).save(out, quality=88)


def meshes_picture(scene, names: list[str], out: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_capture_") as folder:
        paths = []
        for name in names:
            mesh = scene.mesh(name)
            paths.append(Path(folder) / f"{name}.ply")
            mesh.export(paths[-1])
            rows.append({"name": name, "faces": len(mesh.faces)})
        subprocess.run([sys.executable, str(REPO / "scripts" / "render_meshes.py"), "--out",
                        str(out), *map(str, paths)], check=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| case | test PSNR | mean IoU 3D / 2D | objects (3D IoU / photo-assisted 2D) | meshes (faces) |",
             "|---|---|---|---|---|"]
    for r in rows:
        scored = [o for o in r["objects"] if "iou" in o]
        means = (f"{np.mean([o['iou'] for o in scored]):.1f} / {np.mean([o['iou_2d'] for o in scored]):.1f}"
                 if scored else "no true masks")
        objects = ", ".join(f"{o['name']} {o['iou']:.1f} / {o['iou_2d']:.1f}" if "iou" in o
                            else o["name"] for o in r["objects"])
        meshes = ", ".join(f"{m['name']} ({m['faces']})" for m in r["meshes"])
        lines.append(f"| {r['case']} | {r['test_psnr']:.2f} dB | {means} | {objects} | {meshes} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    from engine.scene import Scene

    scene = Scene.from_checkpoint(args.checkpoint)
    test = json.loads(args.test_metrics.read_text()) if args.test_metrics else None
    if test is None or test["step"] != scene.step or test["views"] != "test":
        with tempfile.TemporaryDirectory(prefix="bench_capture_") as folder:
            test = scene.render_views("test", folder)
    objects = segment(scene, args)
    names = args.mesh or [o["name"] for o in objects]
    view = scene.data.test_ids[0] if args.view is None else args.view
    args.pictures.mkdir(parents=True, exist_ok=True)
    views_picture(scene, view, names, args.pictures / f"capture_{args.case}_views.jpg")
    meshes = meshes_picture(scene, names, args.pictures / f"capture_{args.case}_meshes.jpg")
    row = {"case": args.case, "checkpoint": str(args.checkpoint),
           "test_psnr": round(test["mean"]["psnr"], 2), "test_ssim": round(test["mean"]["ssim"], 3),
           "pictured_view": view, "objects": objects, "meshes": meshes}
    save_rows(args.results, "capture", [row], case_order=None, markdown=markdown)
    print(markdown([row]), end="")


if __name__ == "__main__":
    main()
