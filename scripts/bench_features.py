"""Features benchmark: 2D extraction time per image, distillation time, peak memory and
held-out cosine similarity, and the feature field's memory at fern images_4 / 320^3.

    .venv/bin/python scripts/bench_features.py                 # every case
    .venv/bin/python scripts/bench_features.py --case distill_default

Each case runs in its own process (peak memory is the case's own). The distillation cases
start from the default scene's colour checkpoint (runs/default/checkpoint.pt, as the main
job writes it; trained here first when missing). Results go to
bench_results/features_<device>.json and .md (copied into the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import save_rows  # noqa: E402  (scripts/ is on sys.path when run)

DEFAULT_CHECKPOINT = REPO / "runs" / "default" / "checkpoint.pt"
TTA = dict(scales=[0.75, 1.0, 1.25], flip=True)
SINGLE = dict(scales=[1.0], flip=False)

# name -> (kind, settings)
CASES = {
    "extract_efficientnet_224": ("extract", dict(backbone="efficientnet_lite0", input_size=224, **SINGLE)),
    "extract_efficientnet_448": ("extract", dict(backbone="efficientnet_lite0", input_size=448, **SINGLE)),
    "extract_efficientnet_448_tta": ("extract", dict(backbone="efficientnet_lite0", input_size=448, **TTA)),
    "extract_dino_vits8_224": ("extract", dict(backbone="dino_vits8", input_size=224, **SINGLE)),
    "extract_dino_vitb8_224": ("extract", dict(backbone="dino_vitb8", input_size=224, **SINGLE)),
    "distill_default": ("distill", {}),                                 # configs/default.toml
    "distill_default_d64": ("distill", dict(dims=64)),
    "distill_default_d64_single_pass": ("distill", dict(dims=64, **SINGLE)),
    "fern_4_320_memory": ("memory", {}),
}
COSINE_TARGET = 0.9
EXTRACT_TARGET_SECONDS = 2.0
MEMORY_TARGET_MB = 1024


def _hardware(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _default_scene_config(features: dict, out_dir: Path):
    from engine.cli import ensure_default_scene
    from engine.resources import default_config
    from engine.config import load_config

    scene_path = ensure_default_scene()
    config = load_config(default_config(), [f"data.path={str(scene_path)!r}",
                                          f"train.out_dir={str(out_dir)!r}"])
    return dataclasses.replace(config, features=dataclasses.replace(config.features, **features))


def run_extract(settings: dict, device: str, out_root: Path) -> dict:
    """Time the backbone passes over the default scene's images (ViTs: 8 images, random
    weights written to a file: their speed does not depend on the values)."""
    import torch

    from engine.data import load_scene
    from engine.features.backbones import create_architecture
    from engine.features.extract import extract_features

    config = _default_scene_config({**settings, "cache_dir": str(out_root / "cache")}, out_root)
    data = load_scene(config.data)
    weights_note = "packaged ImageNet"
    if settings["backbone"] != "efficientnet_lite0":
        from safetensors.torch import save_file

        data = dataclasses.replace(data, images=data.images[:8], names=data.names[:8],
                                   train_ids=list(range(8)), test_ids=[])
        path = Path(tempfile.mkdtemp()) / "random.safetensors"
        model = create_architecture(settings["backbone"])
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        config = dataclasses.replace(config, features=dataclasses.replace(config.features, weights=str(path)))
        weights_note = "random (timing only)"
    started = time.perf_counter()
    maps = extract_features(data, config.features, torch.device(device), progress=False, use_cache=False)
    seconds = (time.perf_counter() - started) / len(data.names)
    f = config.features
    return {"kind": "extract", "backbone": f.backbone, "weights": weights_note,
            "image_size": f"{data.width}x{data.height}", "input_size": f.input_size,
            "passes": len(f.scales) * (2 if f.flip else 1), "images": len(data.names),
            "map_size": list(maps.map_size), "seconds_per_image": round(seconds, 3),
            "met": seconds <= EXTRACT_TARGET_SECONDS if f.backbone == "efficientnet_lite0" else None}


def run_distill(settings: dict, device: str, out_root: Path, checkpoint: Path) -> dict:
    from engine.scene import Scene
    from engine.train.checkpoint import load_checkpoint

    config = _default_scene_config(settings, out_root)
    scene = Scene(config, device)
    content = load_checkpoint(checkpoint)
    content.pop("features", None)
    scene._restore(content)
    started = time.perf_counter()
    maps = scene.extract_features(progress=False, use_cache=False)
    extract_seconds = time.perf_counter() - started
    report = scene.distill(progress=False, final_eval=False)
    metrics = scene.render_views("test", out_root / "test_views", progress=False, features=True)
    mean = metrics["mean"]
    f, d = config.features, config.distill
    return {"kind": "distill", "dims": f.dims, "passes": len(f.scales) * (2 if f.flip else 1),
            "extract_seconds": round(extract_seconds, 1), "steps": report.steps,
            "distill_seconds": round(report.seconds, 1), "rank": d.rank,
            "feature_field_mb": round(scene.features.num_bytes() / 2**20, 1),
            "map_size": list(maps.map_size),
            "test_cosine": round(mean["feature_cosine"], 4),
            "test_cosine_all_pixels": round(mean["feature_cosine_all"], 4),
            "met": mean["feature_cosine"] >= COSINE_TARGET}


def run_memory(device: str, out_root: Path) -> dict:
    """fern images_4 at 320^3: the feature field's own memory (parameters + Adam moments)
    and the process peak over 20 distillation steps. The density is set so that every ray
    has ~100 samples above the weight threshold (a worst case: a trained fern has fewer)."""
    import torch

    from engine.config import load_config
    from engine.data import load_scene
    from engine.features.extract import extract_features
    from engine.field.feature_field import FeatureField
    from engine.field.radiance_field import RadianceField
    from engine.train.distiller import Distiller
    from engine.train.trainer import initial_box

    fern = REPO.parent / "shared" / "scenes" / "fern"
    if not (fern / "poses_bounds.npy").is_file():
        raise SystemExit(f"{fern}: the fern scene is missing")
    config = load_config(REPO / "configs" / "fern.toml", [
        "data.downscale=4", f"field.num_voxels={320 ** 3}", "distill.steps=20",
        f"train.out_dir={str(out_root / 'fern')!r}", f"features.cache_dir={str(out_root / 'cache')!r}"])
    data = load_scene(config.data)
    maps = extract_features(data, config.features, torch.device(device), progress=False)
    field = RadianceField(config.field, *initial_box(data), config.field.num_voxels)
    with torch.no_grad():  # optical depth 0.06 per step everywhere: softplus(raw + shift) = 0.06
        field.density.grid.fill_(float(torch.log(torch.expm1(torch.tensor(0.06)))) - field.act_shift)
    features = FeatureField(maps.dims, config.distill.rank, field.resolution)
    distiller = Distiller(data, config, field, features, maps, torch.device(device),
                          save=lambda section: out_root / "unsaved")
    before = _peak_mb(device)
    started = time.perf_counter()
    distiller.run_steps(progress=False, cancel=None)
    seconds = time.perf_counter() - started
    adam = sum(t.numel() * t.element_size() for state in distiller.optimizer.state.values()
               for t in state.values() if torch.is_tensor(t))
    field_mb = (features.num_bytes() + adam) / 2**20
    dense_mb = maps.dims * 320 ** 3 * 4 / 2**20
    return {"kind": "memory", "grid": field.resolution, "rank": config.distill.rank,
            "dims": maps.dims, "feature_field_with_adam_mb": round(field_mb, 1),
            "dense_float32_grid_mb": round(dense_mb), "peak_before_mb": round(before),
            "peak_after_mb": round(_peak_mb(device)), "seconds_per_step": round(seconds / 20, 2),
            "met": field_mb <= MEMORY_TARGET_MB}


def run_case(name: str, device: str, out_root: Path, checkpoint: Path) -> dict:
    kind, settings = CASES[name]
    out = out_root / name
    if kind == "extract":
        row = run_extract(settings, device, out)
    elif kind == "distill":
        row = run_distill(settings, device, out, checkpoint)
    else:
        row = run_memory(device, out)
    return {"case": name, "device": device, "hardware": _hardware(device),
            "peak_memory_mb": round(_peak_mb(device)), **row}


def markdown(rows: list[dict]) -> str:
    def verdict(row):
        return "" if row.get("met") is None else ("met" if row["met"] else "missed")

    lines = []
    extract = [r for r in rows if r["kind"] == "extract"]
    if extract:
        lines += ["| extraction | device | weights | input | passes | s / image | peak memory | target <= 2 s |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['backbone']} | {r['device']} ({r['hardware']}) | {r['weights']} | {r['input_size']} px "
                  f"| {r['passes']} | {r['seconds_per_image']:.3f} | {r['peak_memory_mb']} MB | {verdict(r)} |"
                  for r in extract]
    distill = [r for r in rows if r["kind"] == "distill"]
    if distill:
        lines += ["", "| distillation (default scene) | device | D | passes | extract | distill | peak memory "
                  "| held-out cosine (scene pixels) | all pixels | target >= 0.9 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['device']} | {r['dims']} | {r['passes']} | {r['extract_seconds']:.0f} s "
                  f"| {r['steps']} steps, {r['distill_seconds']:.0f} s | {r['peak_memory_mb']} MB "
                  f"| {r['test_cosine']:.3f} | {r['test_cosine_all_pixels']:.3f} | {verdict(r)} |"
                  for r in distill]
    memory = [r for r in rows if r["kind"] == "memory"]
    if memory:
        lines += ["", "| memory (fern images_4) | grid | feature field + Adam | dense float32 grid "
                  "| process peak | s / step | target <= 1 GB |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['case']} ({r['device']}) | {'x'.join(map(str, r['grid']))}, rank {r['rank']}, D {r['dims']} "
                  f"| {r['feature_field_with_adam_mb']:.0f} MB | {r['dense_float32_grid_mb']} MB "
                  f"| {r['peak_after_mb']} MB | {r['seconds_per_step']:.2f} | {verdict(r)} |" for r in memory]
    return "\n".join(lines) + "\n"


def _ensure_colour_checkpoint(checkpoint: Path) -> None:
    if checkpoint.is_file():
        return
    print(f"bench: training the default scene's colour stage into {checkpoint.parent}",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "engine.cli", "train", "--config", "configs/default.toml",
                    "--set", "distill.steps=0", "--set", f"train.out_dir={str(checkpoint.parent)!r}"],
                   cwd=REPO, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append",
                        help="case(s) to run (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="the default scene's colour checkpoint for the distillation cases")
    parser.add_argument("--out", type=Path, default=REPO / "bench_results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # one case, in this process; prints its JSON row
        print(json.dumps(run_case(args.case[0], args.device, args.out / "runs" / "features",
                                  args.checkpoint)))
        return 0

    names = args.case or list(CASES)
    if any(CASES[n][0] == "distill" for n in names):
        _ensure_colour_checkpoint(args.checkpoint)
    rows = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        result = subprocess.run([sys.executable, __file__, "--worker", "--case", name, "--device", args.device,
                                 "--checkpoint", str(args.checkpoint), "--out", str(args.out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(markdown(rows[-1:]), file=sys.stderr, flush=True)
    rows = save_rows(args.out, f"features_{args.device}", rows, list(CASES), markdown)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
