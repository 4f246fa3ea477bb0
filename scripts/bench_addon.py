"""The add-on's own figures, in bpy with a real engine on the trained default scene
(runs/default/checkpoint.pt: ./scripts/demo.sh or scripts/serve_example.py make it).

Cases:
- stroke_to_overlay: each benchmark object's first stroke, sent the way the painter sends
  it, until the engine view (overlay of that segment) holds a picture showing it: what an
  artist waits for after releasing the mouse (target <= 1.5 s p95);
- viewport_preview: a moving viewport (1024 x 768, the camera shifted every frame): how
  many 256-px-wide previews per second reach the view (target >= 5 on 2 CPU cores);
  _overlay: the same with the active segment tinted;
- ui_thread: the longest time that one of the add-on's own UI-thread calls took during
  the two cases above (the timer's pump, the engine view's update, the answers'
  callbacks; target <= 100 ms);
- mesh_import_1M: a coloured mesh of 1M vertices and 2M faces made into a Blender object
  (target <= 2 s).

Writes bench_results/addon_<device>.json and .md.
Usage: .venv/bin/python scripts/bench_addon.py [--checkpoint PATH] [--frames 40]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import bpy  # noqa: F401  (first: the add-on's modules import it)
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import isrf_addon  # noqa: E402
from isrf_addon import engine_view, operators, runtime, scene_objects  # noqa: E402
from scripts.bench_serve import first_strokes  # noqa: E402

TARGETS = {"stroke_to_overlay": ("p95", 1.5, "<="), "viewport_preview": ("fps", 5.0, ">="),
           "viewport_preview_overlay": ("fps", 5.0, ">="),
           "ui_thread": ("max", 0.100, "<="), "mesh_import_1M": ("seconds", 2.0, "<=")}


class UiClock:
    """Times every call of the add-on's UI-thread functions (the longest one counts)."""

    def __init__(self):
        self.longest = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.longest = max(self.longest, time.perf_counter() - started)
        return timed


def wait(condition, what: str, pump, seconds: float = 300) -> None:
    """Run the add-on's timer work at its own cadence until `condition()`: as in Blender,
    what the timer delivers is seen at once (the engine view's tick runs right after)."""
    deadline = time.monotonic() + seconds
    while True:
        pump()
        if condition():
            return
        if runtime.LINK.state == "failed" or bpy.context.scene.isrf.message:
            sys.exit(f"failed waiting for {what}: {runtime.LINK.message} {bpy.context.scene.isrf.message}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(runtime.timer_interval())


def viewport(camera: dict, image: tuple[int, int], width: int, height: int,
             shift: float = 0.0) -> dict:
    """A dataset camera (Blender frame; its images `image` = (width, height)) as a
    width x height viewport with the same focal length per pixel of width, moved by
    `shift` along Blender's x."""
    scale = width / image[0]
    fx, fy, cx, cy = camera["intrinsics"]
    cx, cy = width / 2 + (cx - image[0] / 2) * scale, height / 2 + (cy - image[1] / 2) * scale
    c2w = [list(row) for row in camera["c2w_blender"]]
    c2w[0][3] += shift
    return {"intrinsics": [fx * scale, fy * scale, cx, cy], "c2w": c2w,
            "width": width, "height": height, "convention": "opengl", "frame": "blender"}


def interactive_cases(checkpoint: Path, frames: int, device: str, clock: UiClock) -> list[dict]:
    link, settings = runtime.LINK, bpy.context.scene.isrf
    pump = clock.wrap(runtime.pump)
    work = Path(tempfile.mkdtemp(prefix="isrf-bench-addon-"))
    link.start_local([sys.executable, "-m", "engine.cli"], work / "state", work / "engine.log", device)
    wait(lambda: link.state == "connected", "the engine", pump)
    settings.checkpoint = str(checkpoint)
    assert bpy.ops.isrf.scene_open() == {"FINISHED"}
    wait(lambda: settings.scene_id, "the scene", pump)
    answer = link.client.cameras(settings.scene_id)
    cameras, image = answer["cameras"], (answer["width"], answer["height"])
    request = clock.wrap(engine_view.request_for_view)
    settings.view_mode, settings.view_resolution = "OVERLAY", 0.5
    rows = []

    seconds = []
    for stroke in first_strokes():
        assert bpy.ops.isrf.segment_add(name=stroke["name"]) == {"FINISHED"}
        wait(lambda: any(s.name == stroke["name"] for s in settings.segments), "the segment", pump)
        settings.active_segment = [s.name for s in settings.segments].index(stroke["name"])
        view = viewport(cameras[stroke["camera"]["view"]], image, 1024, 768)
        state = engine_view.ViewState()
        started = time.perf_counter()
        operators.send_stroke(None, bpy.context, stroke["camera"], stroke["polylines"],
                              stroke["radius"], stroke["label"])

        def shows_the_stroke() -> bool:
            request(state, settings, view, time.monotonic())
            return state.shown is not None and state.shown[0][5] == stroke["name"] \
                and state.shown[0][6][:1] == (1,)
        wait(shows_the_stroke, "the overlay", pump)
        seconds.append(time.perf_counter() - started)
    rows.append({"case": "stroke_to_overlay", "calls": len(seconds),
                 "p50": float(np.percentile(seconds, 50)), "p95": float(np.percentile(seconds, 95))})

    for mode in ("COLOUR", "OVERLAY"):
        settings.view_mode = mode
        state, delivered, engine_seconds = engine_view.ViewState(), 0, []
        started = time.perf_counter()
        for frame in range(frames):     # the view moves every frame: previews only
            view = viewport(cameras[0], image, 1024, 768, shift=0.02 * math.sin(frame / 5))
            request(state, settings, view, time.monotonic())
            wait(lambda: not state.in_flight, "a preview", pump)
            delivered += state.shown is not None and state.shown[1] == "preview"
            engine_seconds.append(state.seconds)
        rows.append({"case": "viewport_preview" + ("" if mode == "COLOUR" else "_overlay"),
                     "calls": frames, "fps": delivered / (time.perf_counter() - started),
                     "size": list(state.picture.shape[:2]),
                     "engine_p50_s": float(np.percentile(engine_seconds, 50))})
    link.stop()
    return rows


def mesh_import_case(scene) -> dict:
    side = 1000                                   # a 1000 x 1000 grid: 1M vertices, 2M faces
    u, v = np.meshgrid(np.linspace(0, 1, side, dtype=np.float32), np.linspace(0, 1, side, dtype=np.float32))
    vertices = np.stack([u, v, 0.1 * np.sin(8 * u) * np.cos(8 * v)], -1).reshape(-1, 3)
    index = np.arange(side * side, dtype=np.int32).reshape(side, side)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    colours = (np.random.default_rng(0).random((len(vertices), 4)) * 255).astype(np.uint8)
    started = time.perf_counter()
    scene_objects.mesh_object("bench", vertices, faces, colours, scene)
    seconds = time.perf_counter() - started
    return {"case": "mesh_import_1M", "calls": 1, "seconds": seconds,
            "vertices": len(vertices), "faces": len(faces)}


def verdicts(rows: list[dict]) -> None:
    for row in rows:
        key, target, sense = TARGETS[row["case"]]
        met = row[key] <= target if sense == "<=" else row[key] >= target
        row["verdict"] = f"{key} {sense} {target:g}: {'met' if met else 'missed'}"


def markdown(rows: list[dict], device: str) -> str:
    lines = ["| case | calls | figure | target |", "|---|---|---|---|"]
    for row in rows:
        key = TARGETS[row["case"]][0]
        value = f"{row[key]:.1f} frames/s" if key == "fps" else f"{1000 * row[key]:.0f} ms"
        if "engine_p50_s" in row:
            value += f" (engine {1000 * row['engine_p50_s']:.0f} ms a frame)"
        if row["case"] == "stroke_to_overlay":
            value = f"p50 {1000 * row['p50']:.0f} ms, p95 {value}"
        lines.append(f"| {row['case']} | {row['calls']} | {value} | {row['verdict']} |")
    return "\n".join(lines) + f"\n\n{device}, {datetime.date.today()}, bpy {bpy.app.version_string}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_results")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no checkpoint; run ./scripts/demo.sh or scripts/serve_example.py")
    isrf_addon.register()
    clock = UiClock()
    try:
        rows = interactive_cases(args.checkpoint.resolve(), args.frames, args.device, clock)
        rows.append({"case": "ui_thread", "calls": 1, "max": clock.longest})
        rows.append(mesh_import_case(bpy.context.scene))
    finally:
        isrf_addon.unregister()
    verdicts(rows)
    device = f"{args.device} ({platform.machine()}, engine on the same machine)"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"addon_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    stem.with_suffix(".md").write_text(markdown(rows, device))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
