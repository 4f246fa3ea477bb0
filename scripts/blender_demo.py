"""The main job's last part: the artist's loop, headless in Blender through the add-on.

Builds and installs the extension into a throwaway Blender user folder, starts the
engine from the add-on's preferences, opens the trained default scene, imports its
cameras, paints the benchmark object's strokes with the add-on's stroke operator,
imports the mesh, and writes:
- runs/default/blender/isrf_demo.blend (cameras with their photos, the coloured mesh);
- runs/default/blender/isrf_demo.png: one view's photo | the engine's overlay of the
  selection | Cycles' render of the imported mesh from that view's camera.

Run by ./scripts/demo.sh after `isrf demo`, with BLENDER_USER_RESOURCES set (the add-on is
installed there, never into the user's Blender):
    BLENDER_USER_RESOURCES=runs/default/blender/user .venv/bin/python scripts/blender_demo.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = "bl_ext.user_default.isrf"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "default" / "checkpoint.pt")
    parser.add_argument("--benchmark", type=Path, default=REPO / "benchmarks" / "default.json")
    parser.add_argument("--object", help="the benchmark object to cut out (default: the "
                                         "benchmark's demo_object, else its first)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "default" / "blender")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples of the render")
    return parser.parse_args()


def build_extension(out_dir: Path) -> Path:
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_addon.py"), "--out-dir",
                    str(out_dir)], check=True, stdout=subprocess.DEVNULL)
    return next(out_dir.glob("isrf-*.zip"))


def main() -> None:
    args = parse_args()
    if "BLENDER_USER_RESOURCES" not in os.environ:
        sys.exit("set BLENDER_USER_RESOURCES to a throwaway folder (see the docstring)")
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no trained scene; run ./scripts/demo.sh")
    from engine.errors import IsrfError
    from engine.segment.benchmark import load_benchmark
    try:
        name = load_benchmark(args.benchmark).mesh_object(args.object)
    except IsrfError as error:
        sys.exit(f"{args.benchmark}: {error}")
    spec = json.loads(args.benchmark.read_text())
    target = next(o for o in spec["objects"] if o["name"] == name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    package = build_extension(args.out_dir / "dist")

    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.extensions.package_install_files(filepath=str(package), repo="user_default",
                                             enable_on_install=True)
    runtime = sys.modules[f"{MODULE}.runtime"]
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.engine_command, prefs.device = sys.executable, args.device
    settings = bpy.context.scene.isrf

    def wait(condition, what: str, seconds: float = 1800) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            runtime.pump()    # background mode runs no timers: deliver the answers here
            if runtime.LINK.state == "failed" or settings.message:
                sys.exit(f"{what}: {runtime.LINK.message if runtime.LINK.state == 'failed' else settings.message}")
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {what}")
            time.sleep(0.02)

    try:
        print("blender: starting the engine from the add-on", file=sys.stderr)
        bpy.ops.isrf.engine_start()
        wait(lambda: runtime.LINK.state == "connected", "the engine")
        settings.checkpoint = str(args.checkpoint.resolve())
        bpy.ops.isrf.scene_open()
        wait(lambda: settings.scene_id, "opening the scene")
        bpy.ops.isrf.cameras_import()
        wait(lambda: "ISRF cameras" in bpy.data.collections, "the cameras")
        bpy.ops.isrf.segment_add(name=name)
        wait(lambda: len(settings.segments) == 1, "the segment")
        for number, stroke in enumerate(target["strokes"], 1):
            settings.brush_radius = stroke["radius"]
            points = [{"name": "", "position": point, "new_line": i == 0}
                      for line in stroke["polylines"] for i, point in enumerate(line)]
            bpy.ops.isrf.stroke(points=points, view=stroke["camera"]["view"],
                                negative=stroke["label"] == "negative")
            wait(lambda: settings.segments[0].strokes == number, f"stroke {number}")
        print(f"blender: {name}: {settings.segments[0].voxels} voxels after "
              f"{len(target['strokes'])} strokes ({settings.last_stroke})", file=sys.stderr)
        bpy.ops.isrf.mesh_import()
        wait(lambda: name in bpy.data.objects, "the mesh", seconds=3600)
        print(f"blender: {settings.info}", file=sys.stderr)
        view = target["targets"][0]["view"]
        overlay = args.out_dir / "isrf_demo_overlay.png"     # what the engine view shows
        overlay.write_bytes(runtime.LINK.client.render_png(
            settings.scene_id, {"view": view}, mode="overlay", segment=name))
    finally:
        runtime.LINK.stop()
    camera = next(o for o in bpy.data.collections["ISRF cameras"].objects if o["isrf_view"] == view)
    render_beside_photo(bpy, bpy.context.scene, camera, bpy.data.objects[name],
                        overlay, args.out_dir / "isrf_demo.png", args.samples)
    blend = args.out_dir / "isrf_demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print(f"blender: {blend}; {args.out_dir / 'isrf_demo.png'} (photo | engine overlay | Cycles render)",
          file=sys.stderr)


def render_beside_photo(bpy, scene, camera, mesh, overlay: Path, path: Path, samples: int) -> None:
    """One picture: the camera's photo | the engine's overlay of the segment | Cycles'
    render of the imported `mesh` alone from `camera`, over white."""
    from PIL import Image
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", samples
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 200     # small captures: a picture one can see
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("ISRF demo light")   # Blender 5 gives it its nodes
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1, 1, 1, 1)
    scene.world = world
    for obj in scene.objects:
        obj.hide_render = obj is not mesh and obj.type != "CAMERA"
    rendered = path.with_name(path.stem + "_render.png")
    scene.render.filepath = str(rendered)
    bpy.ops.render.render(write_still=True)
    render = Image.open(rendered).convert("RGBA")
    white = Image.new("RGBA", render.size, (255, 255, 255, 255))
    render = Image.alpha_composite(white, render).convert("RGB")
    photo = Image.open(bpy.path.abspath(camera.data.background_images[0].image.filepath))
    photo = Image.alpha_composite(white, photo.convert("RGBA").resize(render.size, Image.LANCZOS))
    photo = photo.convert("RGB")
    engine = Image.open(overlay).convert("RGB").resize(render.size, Image.LANCZOS)
    pictures = [photo, engine, render]
    box = _content_box(pictures, margin=render.width // 20)
    pictures = [picture.crop(box) for picture in pictures]
    width, height = pictures[0].size
    sheet = Image.new("RGB", (width * 3, height), "white")
    for column, picture in enumerate(pictures):
        sheet.paste(picture, (column * width, 0))
    sheet.save(path)


def _content_box(pictures, margin: int) -> tuple[int, int, int, int]:
    """The smallest box (left, top, right, bottom) holding every non-white pixel of all
    the (same-sized) pictures, grown by `margin`."""
    import numpy as np
    ink = np.zeros(pictures[0].size[::-1], bool)
    for picture in pictures:
        ink |= (np.asarray(picture) < 245).any(-1)
    rows, cols = np.nonzero(ink)
    if len(rows) == 0:
        return (0, 0, *pictures[0].size)
    width, height = pictures[0].size
    return (max(0, cols.min() - margin), max(0, rows.min() - margin),
            min(width, cols.max() + 1 + margin), min(height, rows.max() + 1 + margin))


if __name__ == "__main__":
    main()
