"""Segmentation benchmark: stroke -> updated mask latency, memory, meshing time, and the
IoU / pixel accuracy of every object of the default scene (benchmarks/default.json).

    .venv/bin/python scripts/bench_segment.py                  # every case, CPU
    .venv/bin/python scripts/bench_segment.py --case mesh_256 --device cuda

Cases:
- default_scene: the default benchmark on the main job's checkpoint (runs/default/
  checkpoint.pt; `./scripts/demo.sh` writes it): per-object IoU and accuracy, and the
  latency of each of its strokes (from the stroke's JSON to the segment's updated mask:
  rays, features, k-means, seeds, growth), p50 / p95, with the process's peak memory.
- refine_default: the default benchmark's segments, each then refined with every third
  training view's photograph (`SegmentationSession.refine`): seconds per object, and each
  object's IoU before and after, as `isrf eval` scores it and from its voxels alone (no
  2D steps: mask_edge_radius 0, mask_grabcut_band 0, threshold 0.5), the closer measure
  of what its mesh holds.
- mesh_default: meshing one object of the default scene at its grid (211x161x62).
- mesh_256: meshing a 256^3 grid holding a ball of radius 0.4 of the box.
- growth_rounds: region growth on made-up grids, for what bounds it on a GPU: a
  one-voxel-wide line of 1000 voxels (one voxel joins a round, so a round's time is all
  fixed costs: operations dispatched, kernel launches, waits for the device), and a ball
  of radius 100 voxels in a 320^3 grid (4.2M voxels, fronts of up to about 250k voxels).
  With the kernels a stroke uses (on a GPU with Triton: grow_fused.py's), and on a GPU
  with PyTorch's operations too (the torch_ figures).
- fern_320: the strokes of benchmarks/fern_strokes.json on fern `images_4` trained at
  320^3 (the issue's GPU setting), each replayed REPEATS times: stroke latency p50 / p95,
  the bytes the segmentation domain holds and those of the fields, and the peak memory
  while segmenting (on a GPU, the allocator's peak: the fields and features included);
  then one more pass with the device synchronised around each stage, for the median
  milliseconds each stage takes (rays, k-means, distances, seeds, growth, the rest). It
  needs the checkpoint `--fern-checkpoint` (default runs/fern_320/checkpoint.pt), made by
      .venv/bin/isrf train --config configs/fern_gpu.toml --device cuda \
          --set field.num_voxels=32768000 --set train.out_dir='"runs/fern_320"'
  and is skipped (with a line saying so) when that file is missing. On a CPU it runs too
  (docs/segmentation_measurements.md: a CPU-trained fern checkpoint at the same grid, for
  the memory the domain takes).

Each case runs in its own process. Results: bench_results/segment_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import heap_peak, save_rows  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "runs" / "default" / "checkpoint.pt"
BENCHMARK = REPO / "benchmarks" / "default.json"
FERN_CHECKPOINT = REPO / "runs" / "fern_320" / "checkpoint.pt"
FERN_STROKES = REPO / "benchmarks" / "fern_strokes.json"
CASES = ["default_scene", "refine_default", "mesh_default", "mesh_256", "growth_rounds",
         "fern_320"]
NEEDS_NO_CHECKPOINT = ("mesh_256", "growth_rounds")
VOXELS_ALONE = {"mask_edge_radius": 0, "mask_grabcut_band": 0, "mask_opacity": 0.5}
REPEATS = 5


def _peak_mb(device) -> dict:
    import torch

    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        peak["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return peak


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _kernels_used(device) -> str:
    """The growth kernels this process's strokes ran: on a GPU with Triton the fused ones,
    unless they failed once (grow.py then warns, on stderr, and uses PyTorch's)."""
    from engine.segment import grow

    return "torch (the fused kernels failed)" if grow._fused_failed else grow.auto_kernels(device)


def _open_session(device, checkpoint: Path):
    """(scene, its segmentation session, seconds the session took to start)."""
    import torch

    from engine.scene import Scene

    torch.set_grad_enabled(False)
    scene = Scene.from_checkpoint(checkpoint, device)
    started = time.perf_counter()
    session = scene.segmentation
    _sync(device)
    return scene, session, time.perf_counter() - started


@contextmanager
def _stage_timers(device):
    """Within the block, time each stroke's stages (the device synchronised around each,
    so only for a pass of its own) -> a list, one dict per stroke: seconds per stage,
    "total" and the growth's "rounds"."""
    import engine.segment.region as region
    import engine.segment.session as session_module
    from engine.segment.probing import StrokeProbe
    from engine.segment.voxels import VoxelDomain

    strokes: list[dict] = []

    def timed(stage: str, function):
        def wrapper(*args, **kwargs):
            _sync(device)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                _sync(device)
                if strokes:
                    strokes[-1][stage] = strokes[-1].get(stage, 0.0) + time.perf_counter() - started
        return wrapper

    def stroke(function):
        def wrapper(*args, **kwargs):
            strokes.append({})
            _sync(device)
            started = time.perf_counter()
            result = function(*args, **kwargs)
            _sync(device)
            strokes[-1].update(total=time.perf_counter() - started, rounds=result.rounds)
            return result
        return wrapper

    patches = [(session_module.SegmentationSession, "stroke", stroke),
               (StrokeProbe, "view", lambda f: timed("rays", f)),
               (session_module, "stroke_centres", lambda f: timed("kmeans", f)),
               (VoxelDomain, "nearest_distances", lambda f: timed("distances", f)),
               (region, "propagate", lambda f: timed("seeds", f)),
               (region, "bilateral_grow", lambda f: timed("growth", f))]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, wrap in patches:
        setattr(owner, name, wrap(getattr(owner, name)))
    try:
        yield strokes
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


STAGES = ["rays", "kmeans", "distances", "seeds", "growth"]


def _stage_summary(strokes: list[dict]) -> dict:
    """Per-stage medians over strokes (ms): where a stroke's time goes."""
    import numpy as np

    stages = {stage: [s.get(stage, 0.0) for s in strokes] for stage in STAGES}
    stages["rest"] = [s["total"] - sum(s.get(stage, 0.0) for stage in STAGES) for s in strokes]
    rounds = [s["rounds"] for s in strokes]
    return {"stage_p50_ms": {k: round(1000 * float(np.median(v)), 1) for k, v in stages.items()},
            "growth_rounds_p50": int(np.median(rounds)), "growth_rounds_max": max(rounds)}


def _stroke_summary(scene, setup: float, latencies: list[float]) -> dict:
    """The grid, the session's start-up time and the strokes' latency percentiles."""
    import numpy as np

    return {"grid": "x".join(map(str, scene.field.resolution)),
            "domain_voxels": scene.segmentation.domain.size, "session_setup_s": round(setup, 2),
            "strokes": len(latencies),
            "stroke_p50_s": round(float(np.percentile(latencies, 50)), 3),
            "stroke_p95_s": round(float(np.percentile(latencies, 95)), 3)}


def case_default_scene(device, checkpoint: Path) -> dict:
    from engine.segment import benchmark as bench

    scene, _, setup = _open_session(device, checkpoint)
    spec = bench.load_benchmark(BENCHMARK)
    results = bench.run_benchmark(scene, spec, BENCHMARK.parent / spec.scene, progress=False)
    latencies = [s for o in results["objects"] for s in o["stroke_seconds"]]
    return {**_stroke_summary(scene, setup, latencies),
            "mean_iou": round(100 * results["mean_iou"], 1),
            "mean_accuracy": round(100 * results["mean_accuracy"], 2),
            "objects": {o["name"]: [round(100 * o["iou"], 1), round(100 * o["accuracy"], 2)]
                        for o in results["objects"]},
            **_peak_mb(device)}


def case_refine_default(device, checkpoint: Path) -> dict:
    import dataclasses

    import numpy as np

    from engine.segment import benchmark as bench

    scene, session, _ = _open_session(device, checkpoint)
    spec = bench.load_benchmark(BENCHMARK)
    scene_dir = (BENCHMARK.parent / spec.scene).resolve()
    results = bench.run_benchmark(scene, spec, BENCHMARK.parent / spec.scene, progress=False)
    scored = {o["name"]: round(100 * o["iou"], 1) for o in results["objects"]}  # isrf eval's

    def iou(item, **params) -> float:
        segment = session.segment(item.name)
        kept, segment.params = segment.params, dataclasses.replace(segment.params, **params)
        rows = bench.score_targets(scene, item, scene_dir)
        segment.params = kept
        return round(100 * float(np.mean([r["iou"] for r in rows])), 1)

    objects, seconds = {}, []
    for item in spec.objects:
        before = [scored[item.name], iou(item, **VOXELS_ALONE)]
        result = session.refine(item.name)
        _sync(device)
        seconds.append(result.seconds)
        objects[item.name] = {"eval": [before[0], iou(item)],
                              "voxels_alone": [before[1], iou(item, **VOXELS_ALONE)],
                              "added": result.added, "seconds": round(result.seconds, 1),
                              "views": len(result.views)}
    means = {key: [round(float(np.mean([o[key][i] for o in objects.values()])), 1)
                   for i in (0, 1)] for key in ("eval", "voxels_alone")}
    return {"grid": "x".join(map(str, scene.field.resolution)), "objects": objects,
            "mean_eval": means["eval"], "mean_voxels_alone": means["voxels_alone"],
            "refine_p50_s": round(float(np.percentile(seconds, 50)), 1),
            "refine_max_s": round(max(seconds), 1), **_peak_mb(device)}


def case_fern_320(device, checkpoint: Path) -> dict:
    from engine.segment.strokes import load_strokes_file

    scene, session, setup = _open_session(device, checkpoint)
    segments = load_strokes_file(FERN_STROKES).segments

    def replay(on_stroke) -> None:
        for segment in segments:
            if segment.name in session.segments:
                session.remove_segment(segment.name)
            session.add_segment(segment.name, segment.params)
            for stroke in segment.strokes:
                on_stroke(segment.name, stroke)

    latencies, stroke_heap = [], []

    def warm_up(name, stroke) -> None:     # warms kernels and caches; memory measured here
        # (its sampling thread would slow the timed strokes)
        with heap_peak() if device.type == "cpu" else nullcontext() as heap:
            session.stroke(name, stroke)
        _sync(device)
        if heap and heap["mb"] is not None:
            stroke_heap.append(heap["mb"])

    def timed(name, stroke) -> None:
        result = session.stroke(name, stroke)
        _sync(device)
        latencies.append(result.seconds)

    replay(warm_up)
    for _ in range(REPEATS):
        replay(timed)
    with _stage_timers(device) as staged:   # one more pass, for where the time goes
        replay(lambda name, stroke: session.stroke(name, stroke))
    fields = [scene.field, scene.features]
    return {**_stroke_summary(scene, setup, latencies), **_stage_summary(staged),
            "kernels": _kernels_used(device),
            "mask_voxels": int(session.mask(segments[-1].name).sum()),
            **({"stroke_peak_heap_mb": max(stroke_heap)} if stroke_heap else {}),
            "feature_dims": session.domain.features.shape[1],
            "domain_mb": round(session.domain.num_bytes() / 2**20),
            "fields_mb": round(sum(t.numel() * t.element_size() for f in fields
                                   for t in [*f.parameters(), *f.buffers()]) / 2**20),
            **_peak_mb(device)}


def case_mesh_default(device, checkpoint: Path) -> dict:
    from engine.scene import Scene
    from engine.segment.benchmark import load_benchmark

    scene = Scene.from_checkpoint(checkpoint, device)
    item = next(o for o in load_benchmark(BENCHMARK).objects if o.name == "checker_cube")
    for stroke in item.strokes:
        scene.segmentation.stroke(item.name, stroke)
    _sync(device)
    started = time.perf_counter()
    mesh = scene.mesh(item.name)
    _sync(device)
    return {"grid": "x".join(map(str, scene.field.resolution)), "object": item.name,
            "seconds": round(time.perf_counter() - started, 3), "vertices": len(mesh.vertices),
            "faces": len(mesh.faces), **_peak_mb(device)}


def case_mesh_256(device, checkpoint: Path) -> dict:
    import torch

    from engine.config import FieldConfig, MeshConfig
    from engine.field.radiance_field import RadianceField
    from engine.field.renderer import RaySpace
    from engine.mesh.extract import extract_mesh

    field = RadianceField(FieldConfig(), -torch.ones(3), torch.ones(3), num_voxels=256**3).to(device)
    axes = [torch.linspace(-1, 1, n, device=device) for n in field.resolution]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    with torch.no_grad():
        field.density.grid[0, 0] = -field.act_shift + (0.4 - points.norm(dim=-1)) / field.voxel_size * 4
    field.update_occupancy()
    space = RaySpace("bounded", (1.0, 1.0, 1.0))
    timings = []
    for _ in range(3):
        _sync(device)
        started = time.perf_counter()
        mesh = extract_mesh(field, space, torch.eye(4), MeshConfig(max_faces=0))
        _sync(device)
        timings.append(time.perf_counter() - started)
    return {"grid": "x".join(map(str, field.resolution)), "seconds": round(min(timings), 3),
            "vertices": len(mesh.vertices), "faces": len(mesh.faces), **_peak_mb(device)}


def case_growth_rounds(device, checkpoint: Path) -> dict:
    import torch

    from engine.config import SegmentConfig
    from engine.segment import grow
    from engine.segment.grow import bilateral_grow, propagate
    from engine.segment.voxels import VoxelDomain, feature_dtype

    torch.set_grad_enabled(False)
    params = SegmentConfig()

    def domain_of(occupied: torch.Tensor) -> VoxelDomain:
        coords = torch.nonzero(occupied)
        features = torch.zeros(len(coords), 4, device=device, dtype=feature_dtype(device))
        features[:, 0] = 1                            # all alike: growth fills the shape
        domain = VoxelDomain.create(coords, list(occupied.shape), features)
        domain.neighbour_similarity()                 # made once per session, not timed
        return domain

    def fastest(run, repeats: int = 3) -> tuple[float, object]:
        timings = []
        for _ in range(repeats):
            _sync(device)
            started = time.perf_counter()
            result = run()
            _sync(device)
            timings.append(time.perf_counter() - started)
        return min(timings), result

    def grow_and_propagate(domain: VoxelDomain, seeds: torch.Tensor, kernels: str) -> dict:
        everywhere = torch.ones_like(seeds)
        grow_s, (grown, rounds) = fastest(lambda: bilateral_grow(
            domain, seeds, everywhere, params.sigma_f, params.sigma_d, params.join, 10**6,
            kernels=kernels))
        propagate_s, reached = fastest(lambda: propagate(domain, seeds, everywhere,
                                                         kernels=kernels))
        if not (grown.all() and reached.all()):
            raise RuntimeError("growth_rounds: the region did not fill its shape")
        return {"grow_s": grow_s, "rounds": rounds, "propagate_s": propagate_s}

    line = torch.zeros(1000, 3, 3, dtype=torch.bool, device=device)
    line[:, 1, 1] = True
    seed = torch.zeros(1000, dtype=torch.bool, device=device)
    seed[0] = True
    line_domain = domain_of(line)
    axis = torch.arange(320, device=device, dtype=torch.float32) - 159.5
    ball = (axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2) <= 100 ** 2
    ball_domain = domain_of(ball)
    centre = (ball_domain.coords.float() - 159.5).norm(dim=1) < 2

    # What a stroke uses ("auto"); on a GPU, PyTorch's operations too, for comparison.
    fused = grow.auto_kernels(device) == "triton"
    row = {"grid": "1000x3x3, 320^3"}
    for kernels, prefix in [("auto", "")] + ([("torch", "torch_")] if fused else []):
        thin = grow_and_propagate(line_domain, seed, kernels)
        thick = grow_and_propagate(ball_domain, centre, kernels)
        row.update({
            f"{prefix}line_grow_us_per_round": round(1e6 * thin["grow_s"] / thin["rounds"]),
            f"{prefix}line_propagate_us_per_round": round(1e6 * thin["propagate_s"] / 999),
            f"{prefix}ball_rounds": thick["rounds"],
            f"{prefix}ball_grow_s": round(thick["grow_s"], 3),
            f"{prefix}ball_propagate_s": round(thick["propagate_s"], 3)})
    return {**row, "kernels": _kernels_used(device), "ball_voxels": ball_domain.size,
            **_peak_mb(device)}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | device | grid | result | peak memory |", "|---|---|---|---|---|"]
    for r in rows:
        if r["case"] in ("default_scene", "fern_320"):
            quality = (f"mean IoU {r['mean_iou']}, accuracy {r['mean_accuracy']}; "
                       if "mean_iou" in r else "")
            result = (f"{quality}stroke p50 {r['stroke_p50_s']} s, p95 {r['stroke_p95_s']} s "
                      f"({r['strokes']} strokes, {r['domain_voxels']} voxels)")
            if "domain_mb" in r:
                result += f"; domain {r['domain_mb']} MB, fields {r['fields_mb']} MB"
            if "stroke_peak_heap_mb" in r:
                result += f", a stroke's peak above them {r['stroke_peak_heap_mb']} MB"
            if "stage_p50_ms" in r:
                result += ("; p50 ms by stage: " +
                           ", ".join(f"{k} {v}" for k, v in r["stage_p50_ms"].items()) +
                           f" ({r['growth_rounds_p50']} growth rounds, {r['growth_rounds_max']} at most)")
            if "kernels" in r:
                result += f"; growth kernels: {r['kernels']}"
        elif r["case"] == "refine_default":
            result = (f"mean IoU {r['mean_eval'][0]} -> {r['mean_eval'][1]}, voxels alone "
                      f"{r['mean_voxels_alone'][0]} -> {r['mean_voxels_alone'][1]}; "
                      f"{r['refine_p50_s']} s per object (p50), {r['refine_max_s']} s at most")
        elif r["case"] == "growth_rounds":
            result = "; ".join(
                f"{kernels}: a round's fixed cost {r[p + 'line_grow_us_per_round']} us growing, "
                f"{r[p + 'line_propagate_us_per_round']} us propagating; a ball of "
                f"{r['ball_voxels']} voxels grown in {r[p + 'ball_grow_s']} s "
                f"({r[p + 'ball_rounds']} rounds), propagated in {r[p + 'ball_propagate_s']} s"
                for kernels, p in [(r.get("kernels", "torch"), "")] +
                ([("torch", "torch_")] if "torch_ball_grow_s" in r else []))
        else:
            result = f"{r['seconds']} s, {r['faces']} faces"
        memory = f"{r['peak_rss_mb']} MB RSS" + (f", {r['peak_gpu_mb']} MB GPU" if "peak_gpu_mb" in r else "")
        lines.append(f"| {r['case']} | {r['device']} | {r['grid']} | {result} | {memory} |")
    objects = next((r["objects"] for r in rows if r["case"] == "default_scene"), None)
    if objects:
        lines += ["", "| object | IoU | accuracy |", "|---|---|---|"]
        lines += [f"| {name} | {iou} | {acc} |" for name, (iou, acc) in objects.items()]
    refined = next((r["objects"] for r in rows if r["case"] == "refine_default"), None)
    if refined:
        lines += ["", "| object (refined) | IoU | IoU, voxels alone | voxels added | seconds |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {o['eval'][0]} -> {o['eval'][1]} | {o['voxels_alone'][0]} -> "
                  f"{o['voxels_alone'][1]} | {o['added']} | {o['seconds']} |"
                  for name, o in refined.items()]
    return "\n".join(lines) + "\n"


def run_case(name: str, device_name: str, checkpoint: Path) -> dict:
    import torch

    torch.set_num_threads(torch.get_num_threads())
    device = torch.device(device_name)
    row = globals()[f"case_{name}"](device, checkpoint)
    return {"case": name, "device": device_name, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--fern-checkpoint", type=Path, default=FERN_CHECKPOINT)
    parser.add_argument("--results", type=Path, default=REPO / "bench_results",
                        help="folder of segment_<device>.json and .md (rows of other cases kept)")
    parser.add_argument("--one", help=argparse.SUPPRESS)    # internal: run one case here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.device, args.checkpoint)))
        return
    rows, failed = [], []
    for name in args.case or CASES:
        checkpoint = args.fern_checkpoint if name == "fern_320" else args.checkpoint
        if name not in NEEDS_NO_CHECKPOINT and not checkpoint.is_file():
            how = "see this script's docstring" if name == "fern_320" else "run ./scripts/demo.sh"
            print(f"{name}: skipped, {checkpoint} is missing ({how})")
            continue
        result = subprocess.run([sys.executable, __file__, "--one", name, "--device", args.device,
                                 "--checkpoint", str(checkpoint)],
                                capture_output=True, text=True)
        if result.returncode != 0:   # the other cases still run (one call on a lent GPU)
            failed.append(name)
            print(f"{name}: failed (exit code {result.returncode}):\n{result.stderr[-4000:]}",
                  file=sys.stderr)
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    stem = f"segment_{args.device.split(':')[0]}"
    if rows:
        save_rows(args.results, stem, rows, CASES, markdown)
        print(args.results / f"{stem}.md")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
