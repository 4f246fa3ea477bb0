"""A whole session through the engine service, as the Blender add-on drives it.

Starts `isrf serve` (a child process on a free loopback port), opens the default scene
(rendered first if missing), trains its colour and feature stages as jobs with progress
bars, paints the checker cube's strokes from benchmarks/default.json, renders the view
with the selection tinted, and fetches the cube's mesh in Blender's frame.

Usage: .venv/bin/python scripts/serve_example.py [--out runs/serve_example]
           [--checkpoint runs/default/checkpoint.pt] [--set train.steps=1500 ...]
With --checkpoint the scene is opened from it (no training).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.cli import ensure_default_scene  # noqa: E402
from engine.resources import default_benchmark, default_config  # noqa: E402
from isrf_addon.client import EngineClient  # noqa: E402
from isrf_addon.engine_process import EngineProcess  # noqa: E402

OBJECT = "checker_cube"


def follow(client: EngineClient, job: dict) -> dict:
    """Wait for a job with a tqdm bar of its progress; returns its final snapshot."""
    with tqdm(total=100, desc=job["kind"], bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
              mininterval=1.0) as bar:
        def update(snapshot: dict) -> None:
            bar.desc = snapshot["stage"] or snapshot["kind"]
            eta = snapshot["eta_seconds"]
            bar.set_postfix_str(", ".join([*(f"{k} {v}" for k, v in snapshot["metrics"].items()),
                                           *([f"ETA {eta:.0f} s"] if eta is not None else [])]),
                                refresh=False)
            bar.update(round(100 * snapshot["progress"]) - bar.n)
        return client.wait_job(job["id"], on_update=update)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "serve_example")
    parser.add_argument("--checkpoint", type=Path, help="open this instead of training")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config overrides for training")
    parser.add_argument("--device", help="cpu or cuda (default: the engine's choice)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    state_dir = Path(tempfile.mkdtemp(prefix="isrf-serve-"))
    engine = EngineProcess.start([sys.executable, "-m", "engine.cli"], state_dir,
                                 args.out / "engine.log", device=args.device)
    client = engine.client
    try:
        print(f"engine {client.check_version()['version']} on port {client.port} "
              f"(log: {engine.log_path})")
        if args.checkpoint:
            scene = client.open_scene(checkpoint=str(args.checkpoint.resolve()))
        else:
            scene = client.open_scene(dataset=str(ensure_default_scene()), config=str(default_config()),
                                      overrides=args.overrides, out_dir=str(REPO / "runs" / "default"))
        scene_id = scene["id"]
        print(f"scene {scene_id}: {scene['images']} images {scene['width']}x{scene['height']}")
        if not scene["colour_trained"]:
            print("colour:", follow(client, client.start_job(scene_id, "train"))["result"])
        if not client.scene(scene_id)["features_distilled"]:
            print("features:", follow(client, client.start_job(scene_id, "distill"))["result"])

        spec = json.loads(default_benchmark().read_text())
        strokes = next(o for o in spec["objects"] if o["name"] == OBJECT)["strokes"]
        for stroke in strokes:
            result = client.stroke(scene_id, OBJECT, stroke["camera"], stroke["polylines"],
                                   stroke["radius"], stroke["label"])
            print(f"{stroke['label']} stroke: {result['mask']} voxels in {result['seconds']:.2f} s")
        view = strokes[0]["camera"]
        picture = client.render(scene_id, view, mode="overlay", segment=OBJECT)["picture"]
        Image.fromarray(picture).save(args.out / f"{OBJECT}_overlay.png")
        mesh = client.mesh(scene_id, OBJECT)
        print(f"mesh: {len(mesh['vertices'])} vertices, {len(mesh['faces'])} faces (Blender frame)")
        path = client.export_mesh(scene_id, OBJECT, args.out / f"{OBJECT}.glb")
        session = client.save_segmentation(scene_id, str((args.out / "session.npz").resolve()))
        print(f"wrote {args.out / f'{OBJECT}_overlay.png'}, {path}, {session}")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
