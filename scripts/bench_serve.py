"""Latency of the engine service over loopback, each call beside the same call made
in-process, on the default scene's checkpoint (`./scripts/demo.sh` or
`scripts/serve_example.py` make it), and a fuzz run over the API's schema.

Cases (p50 / p95 over --repeats calls):
- status: GET a scene's status (API) vs `Scene.status()` (in-process): the API's overhead;
- render_512x384: a render of an explicit 512 x 384 camera (npz: picture, depth, opacity);
- preview_256x192: the same camera at scale 0.5, quality "preview" (what the viewport shows
  while it moves), and its PSNR against the full-quality render at that size;
- stroke: the first stroke of each benchmark object, each on a new segment;
- stroke_while_training: the same strokes over the API while a colour training job runs
  at the default grid (128^3 from its first step) on a second scene;
- fuzz: schemathesis over the served OpenAPI schema: how many requests, how many 5xx.

Writes bench_results/serve_<device>.json and .md.
Usage: .venv/bin/python scripts/bench_serve.py [--checkpoint runs/default/checkpoint.pt]
           [--repeats 30] [--fuzz-examples 60] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_common import save_rows  # noqa: E402
from engine.resources import default_benchmark, default_config, default_scene_dir  # noqa: E402
from engine import metrics  # noqa: E402
from engine.pictures import picture  # noqa: E402
from engine.scene import Scene  # noqa: E402
from engine.segment.strokes import StrokeCamera, parse_stroke  # noqa: E402
from isrf_addon.client import EngineClient  # noqa: E402
from isrf_addon.engine_process import EngineProcess  # noqa: E402

CASES = ["status", "render_512x384", "preview_256x192", "stroke", "stroke_while_training", "fuzz"]
TARGETS = {
    "status": "API overhead <= 5 ms p50",
    "render_512x384": "API within 10% of in-process",
    "preview_256x192": "<= 150 ms (2 CPU cores)",
    "stroke_while_training": "<= 1.5 s p95 (2 CPU cores)",
    "fuzz": ">= 1000 requests, no 5xx",
}


def timed_side_by_side(api_call, local_call, repeats: int) -> tuple[list[float], list[float]]:
    """`timed` for an API call and the same call in-process, alternating, so that both
    see the same state of a machine whose speed drifts (it does, by up to 40%)."""
    api, local = [], []
    for _ in range(repeats):
        api += timed(api_call, 1)
        local += timed(local_call, 1)
    return api, local


def timed(call, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50)), float(np.percentile(seconds, 95))


def wide_camera(scene: Scene, width: int = 512, height: int = 384) -> dict:
    """View 0's pose with a 512 x 384 image at the same focal length per pixel of width."""
    data = scene.data
    fx, fy, _, _ = data.cameras.intrinsics[0].tolist()
    factor = width / data.width
    return {"intrinsics": [fx * factor, fy * factor, width / 2, height / 2],
            "c2w": data.cameras.c2w[0].double().tolist(), "width": width, "height": height}


def first_strokes() -> list[dict]:
    spec = json.loads(default_benchmark().read_text())
    return [{"name": o["name"], **o["strokes"][0]} for o in spec["objects"]]


def row(case: str, api: list[float], local: list[float] | None, **extra) -> dict:
    api_p50, api_p95 = percentiles(api)
    result = {"case": case, "calls": len(api), "api_p50_s": api_p50, "api_p95_s": api_p95}
    if local is not None:
        result["in_process_p50_s"], result["in_process_p95_s"] = percentiles(local)
    return {**result, **extra}


def verdict(result: dict) -> str:
    case = result["case"]
    if case == "status":
        met = result["api_p50_s"] - result["in_process_p50_s"] <= 0.005
    elif case == "render_512x384":
        met = result["api_p50_s"] <= 1.10 * result["in_process_p50_s"]
    elif case == "preview_256x192":
        met = result["api_p50_s"] <= 0.150
    elif case == "stroke_while_training":
        met = result["api_p95_s"] <= 1.5
    elif case == "fuzz":
        met = result["requests"] >= 1000 and result["server_errors"] == 0
    else:
        return ""
    return f"{TARGETS[case]}: {'met' if met else 'missed'}"


def psnr(picture: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of one RGBA uint8 picture's colour against another's."""
    error = picture[..., :3].astype(np.float64) / 255 - reference[..., :3] / 255
    return metrics.psnr(float(np.mean(error ** 2)))


def stroke_calls(client: EngineClient, scene_id: str, strokes: list[dict]) -> list[float]:
    seconds = []
    for stroke in strokes:
        name = f"bench {stroke['name']}"
        started = time.perf_counter()
        client.stroke(scene_id, name, stroke["camera"], stroke["polylines"], stroke["radius"],
                      stroke["label"])
        seconds.append(time.perf_counter() - started)
        client.delete_segment(scene_id, name)
    return seconds


def fuzz(client: EngineClient, examples: int, work_dir: Path) -> dict:
    """schemathesis over every operation but starting jobs (which would queue trainings
    of the fuzzer's scenes); counts the requests it sent and the 5xx answers."""
    report = work_dir / "fuzz.ndjson"
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run",
         f"http://{client.host}:{client.port}/v1/openapi.json",
         "--header", f"Authorization: Bearer {client.token}", "--checks", "not_a_server_error",
         "--max-examples", str(examples), "--seed", "1", "--workers", "1",
         "--suppress-health-check", "all", "--exclude-path", "/v1/scenes/{scene_id}/jobs",
         "--report", "ndjson", "--report-ndjson-path", str(report)],
        capture_output=True, text=True, cwd=work_dir)
    text = report.read_text() if report.is_file() else ""
    statuses = [int(s) for s in re.findall(r'"status_code":\s*(\d{3})', text)]
    return {"requests": len(statuses), "server_errors": sum(s >= 500 for s in statuses),
            "schemathesis_exit": result.returncode}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | calls | API p50 | API p95 | in-process p50 | in-process p95 | target |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["case"] == "fuzz":
            lines.append(f"| fuzz (schemathesis) | {r['requests']} requests | "
                         f"{r['server_errors']} 5xx | | | | {r['verdict']} |")
            continue
        local = (f"{1000 * r['in_process_p50_s']:.1f} ms | {1000 * r['in_process_p95_s']:.1f} ms"
                 if "in_process_p50_s" in r else "| ")
        case = r["case"] + (f" ({r['psnr_vs_full_db']:.1f} dB from full)"
                            if "psnr_vs_full_db" in r else "")
        lines.append(f"| {case} | {r['calls']} | {1000 * r['api_p50_s']:.1f} ms | "
                     f"{1000 * r['api_p95_s']:.1f} ms | {local} | {r['verdict']} |")
    first = rows[0]
    lines.append(f"\n{first['device']}, {first['date']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fuzz-examples", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_results")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no checkpoint; run ./scripts/demo.sh or scripts/serve_example.py")
    torch.set_grad_enabled(False)
    device_name = (torch.cuda.get_device_name() if args.device == "cuda" else
                   f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)")
    local = Scene.from_checkpoint(args.checkpoint, args.device)
    work_dir = Path(tempfile.mkdtemp(prefix="isrf-bench-serve-"))
    engine = EngineProcess.start([sys.executable, "-m", "engine.cli"], work_dir / "state",
                                 work_dir / "engine.log", device=args.device)
    client = engine.client
    rows = []
    try:
        scene_id = client.open_scene(checkpoint=str(args.checkpoint.resolve()))["id"]
        camera = wide_camera(local)

        def local_render(scale: float, quality: str) -> np.ndarray:
            rendered = local.render_camera(local.camera(StrokeCamera(**camera), scale),
                                           preview=quality == "preview")
            return picture(rendered, "colour")

        rows.append(row("status", *timed_side_by_side(lambda: client.scene(scene_id), local.status,
                                                      10 * args.repeats)))
        for case, scale, quality in (("render_512x384", 1.0, "full"),
                                     ("preview_256x192", 0.5, "preview")):
            client.render(scene_id, camera, scale, quality=quality)   # warm-up
            local_render(scale, quality)
            rows.append(row(case, *timed_side_by_side(
                lambda: client.render(scene_id, camera, scale, quality=quality),
                lambda: local_render(scale, quality), args.repeats)))
        rows[-1]["psnr_vs_full_db"] = psnr(local_render(0.5, "preview"), local_render(0.5, "full"))

        strokes = first_strokes() * max(1, args.repeats // 7)
        local_strokes = []
        for stroke in strokes:
            parsed = parse_stroke({k: v for k, v in stroke.items() if k != "name"})
            started = time.perf_counter()
            local.stroke("bench", parsed)
            local_strokes.append(time.perf_counter() - started)
            local.segmentation.remove_segment("bench")
        rows.append(row("stroke", stroke_calls(client, scene_id, strokes), local_strokes))

        training = client.open_scene(
            dataset=str(default_scene_dir()), config=str(default_config()), out_dir=str(work_dir / "train"),
            overrides=["field.num_voxels_start=2097152", "train.steps=100000",
                       "train.eval_every=0", "train.checkpoint_every=0"])["id"]
        job = client.start_job(training, "train")
        snapshot = client.job(job["id"])
        while snapshot["progress"] == 0:
            snapshot = client.job(job["id"], after=snapshot["version"], wait=30)
        during = stroke_calls(client, scene_id, strokes)
        after = client.job(job["id"])
        client.cancel_job(job["id"])
        rows.append(row("stroke_while_training", during, None,
                        training_steps_meanwhile=int(round((after["progress"] - snapshot["progress"])
                                                           * 100000)),
                        training_state=after["state"]))
        rows.append({"case": "fuzz", **fuzz(client, args.fuzz_examples, work_dir)})
    finally:
        engine.stop()
    stamp = {"device": device_name, "date": datetime.date.today().isoformat()}
    rows = [{**r, **stamp, "verdict": ""} for r in rows]
    for r in rows:
        r["verdict"] = verdict(r)
    rows = save_rows(args.out_dir, f"serve_{args.device}", rows, CASES, markdown)
    print(markdown(rows))


if __name__ == "__main__":
    main()
