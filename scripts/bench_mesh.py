"""Mesh benchmark: every object of the default scene, segmented from its benchmark strokes
and refined (as `isrf eval --refine` does), meshed with the `[mesh]` settings, and scored
against its true surface (engine/mesh/accuracy.py): accuracy, completeness, F-score at
1 and 2 hundredths of a unit (the default grid's voxel is 0.012), colour error against the
held-out photographs, roughness, faces, handles (genus) and pieces, and meshing time.

    .venv/bin/python scripts/bench_mesh.py                                  # the defaults
    .venv/bin/python scripts/bench_mesh.py --case plain --set mesh.surface_smoothing=0
    .venv/bin/python scripts/bench_mesh.py --sheet     # and a contact sheet of the meshes

Needs the main job's checkpoint (runs/default/checkpoint.pt; `./scripts/demo.sh` writes
it) and the scene's true surfaces (scenes/default/meshes/; written with the scene, or, for
a scene rendered before they existed, here by `make_default_scene.py --meshes-only`).
`--session FILE` reuses segments saved by an earlier run (`--save-session FILE`), so
settings can be compared on the same segments. Rows go to bench_results/mesh_<device>.json
and .md under the case's name (other cases' rows are kept).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import save_rows  # noqa: E402

from engine.cli import scene_with_overrides  # noqa: E402
from engine.mesh import accuracy  # noqa: E402
from engine.segment.benchmark import load_benchmark, run_benchmark  # noqa: E402

CHECKPOINT = REPO / "runs" / "default" / "checkpoint.pt"
BENCHMARK = REPO / "benchmarks" / "default.json"
TAUS = (0.01, 0.02)
TRUTH_SAMPLES = 200_000       # per object
OCCLUDER_DENSITY = 100_000    # samples per square unit of the whole scene's true surface


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="default", help="the rows' name (default: default)")
    parser.add_argument("--set", action="append", default=[], metavar="mesh.KEY=VALUE",
                        help="a mesh.* or segment.* setting, as `isrf segment --set`")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--session", type=Path, help="segments saved by --save-session")
    parser.add_argument("--save-session", type=Path, help="save the segments made here")
    parser.add_argument("--sheet", action="store_true",
                        help="also render the meshes into mesh_<device>_<case>.jpg "
                             "(scripts/render_meshes.py: holes and skirts that scores miss)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", type=Path, default=REPO / "bench_results")
    return parser.parse_args()


def true_surfaces(scene_dir: Path, names: list[str]) -> dict[str, trimesh.Trimesh]:
    folder = scene_dir / "meshes"
    if not all((folder / f"{name}.ply").is_file() for name in names):
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_default_scene.py"),
                        "--out", str(scene_dir), "--meshes-only"], check=True)
    return {name: trimesh.load(folder / f"{name}.ply", process=False) for name in names}


def to_cameras_frame(points: np.ndarray, to_scene: torch.Tensor) -> np.ndarray:
    """Capture-frame points (the meshes' frame) -> the frame the engine's cameras use."""
    matrix = to_scene.double().numpy()
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def main() -> None:
    args = parse_args()
    scene = scene_with_overrides(args.checkpoint, args.set, args.device)
    spec = load_benchmark(BENCHMARK)
    scene_dir = (BENCHMARK.parent / spec.scene).resolve()
    names = [item.name for item in spec.objects]
    if args.session:
        scene.segmentation.load(args.session)
    else:
        run_benchmark(scene, spec, BENCHMARK.parent / spec.scene, refine=True)
        if args.save_session:
            scene.segmentation.save(args.save_session)

    truths = true_surfaces(scene_dir, names)
    context = scoring_context(scene, truths)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_mesh_") as folder:
        for name in names:
            start = time.perf_counter()
            mesh = scene.mesh(name)
            seconds = time.perf_counter() - start
            mesh.export(Path(folder) / f"{name}.ply")
            rows.append({"case": args.case, "object": name, "settings": args.set,
                         "seconds": seconds, **scores_of(mesh, truths[name], context)})
            print(f"{name:16s} F@0.02 {rows[-1]['fscore_0.02']:.3f} "
                  f"accuracy {rows[-1]['accuracy']:.4f} completeness {rows[-1]['completeness']:.4f} "
                  f"faces {len(mesh.faces)} {seconds:.2f} s", flush=True)
        rows.append(mean_row(args.case, args.set, rows))
        save_rows(args.results, f"mesh_{args.device}", rows, case_order=None, markdown=markdown)
        if args.sheet:
            stem = f"mesh_{args.device}_{re.sub(r'[^A-Za-z0-9]+', '_', args.case)}"
            subprocess.run([sys.executable, str(REPO / "scripts" / "render_meshes.py"), "--out",
                            str(args.results / f"{stem}.jpg"),
                            *(str(Path(folder) / f"{name}.ply") for name in names)], check=True)


def scoring_context(scene, truths: dict[str, trimesh.Trimesh]) -> dict:
    """What scoring every object needs once: the cameras, the true scene's depth buffers
    in every view, and the held-out views' photographs."""
    cameras, to_scene = scene.data.cameras.to("cpu"), scene.data.to_scene.cpu()
    whole = trimesh.util.concatenate(list(truths.values()))
    occluders, _ = accuracy.surface_samples(whole, int(whole.area * OCCLUDER_DENSITY))
    all_views = list(range(len(cameras)))
    buffers = accuracy.depth_buffers(cameras, all_views, to_cameras_frame(occluders, to_scene))
    test_views = scene.data.test_ids
    return {"cameras": cameras, "to_scene": to_scene, "rotation": to_scene[:3, :3].double().numpy(),
            "all_views": all_views, "buffers": buffers, "test_views": test_views,
            "test_buffers": buffers[test_views],
            "photographs": [scene.data.image_float(view).cpu().numpy() for view in test_views]}


def scores_of(mesh: trimesh.Trimesh, truth: trimesh.Trimesh, context: dict) -> dict:
    """Every score of one object's mesh against its true surface (`truth`)."""
    cameras, to_scene, rotation = context["cameras"], context["to_scene"], context["rotation"]
    points, normals = accuracy.surface_samples(truth, TRUTH_SAMPLES)
    seen = accuracy.seen(cameras, context["all_views"], context["buffers"],
                         to_cameras_frame(points, to_scene), normals @ rotation.T)
    vertices = to_cameras_frame(np.asarray(mesh.vertices), to_scene)
    colour = accuracy.colour_error(mesh, vertices, cameras, context["test_views"],
                                   context["test_buffers"], context["photographs"])
    return {"faces": len(mesh.faces),
            "genus": (2 - mesh.euler_number) // 2 if mesh.is_watertight else None,
            "pieces": len(mesh.split(only_watertight=False)),
            "roughness_deg": accuracy.mesh_roughness(mesh),
            "truth_seen": float(seen.mean()), "colour_error": colour,
            **accuracy.surface_scores(mesh, points, seen, TAUS)}


def mean_row(case: str, settings: list[str], rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, float) or k in ("faces", "seconds")]
    return {"case": case, "object": "mean", "settings": settings,
            **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | object | F@0.01 | F@0.02 | accuracy | completeness | colour error | "
             "roughness (deg) | faces | genus | pieces | seconds |", "|---" * 12 + "|"]
    for r in rows:
        genus = "" if r.get("genus") is None else r["genus"]
        lines.append(f"| {r['case']} | {r['object']} | {100 * r['fscore_0.01']:.1f} | "
                     f"{100 * r['fscore_0.02']:.1f} | {r['accuracy']:.4f} | {r['completeness']:.4f} | "
                     f"{r['colour_error']:.1f} | {r['roughness_deg']:.1f} | {r['faces']:.0f} | {genus} | "
                     f"{r.get('pieces', '')} | "
                     f"{r['seconds']:.2f} |")
    settings = {r["case"]: " ".join(r["settings"]) or "(defaults)" for r in rows}
    lines += ["", *(f"- {case}: {text}" for case, text in settings.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
