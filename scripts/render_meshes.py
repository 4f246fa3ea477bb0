"""Render meshes into one contact sheet with Blender (bpy, Workbench, vertex colours): one
row per mesh, three views (front-left and back-right from above, one from below), so
holes, skirts and ripples that scores miss can be seen.

    .venv/bin/python scripts/render_meshes.py --out sheet.jpg a.ply b.ply ...

scripts/bench_mesh.py --sheet runs it on the meshes it scores.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector
from PIL import Image

TILE = 256
VIEWS = ((30.0, 35.0), (210.0, 35.0), (120.0, -25.0))   # (azimuth, elevation), degrees
DISTANCE = 3.2                                           # in radii of the mesh's bounding sphere


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("meshes", nargs="+", type=Path, help="PLY files")
    parser.add_argument("--out", required=True, type=Path, help="the sheet (.jpg or .png)")
    return parser.parse_args()


def render_views(path: Path, folder: Path) -> list[Image.Image]:
    """The mesh at `path` seen from VIEWS -> TILE x TILE images."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.ply_import(filepath=str(path))
    mesh = bpy.context.selected_objects[0]
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "VERTEX"
    scene.render.resolution_x = scene.render.resolution_y = TILE
    points = np.array([v.co for v in mesh.data.vertices])
    centre = points.mean(0)
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    tiles = []
    for number, (azimuth, elevation) in enumerate(VIEWS):
        a, e = math.radians(azimuth), math.radians(elevation)
        direction = Vector((math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), math.sin(e)))
        camera.location = Vector(centre) + direction * radius * DISTANCE
        camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
        scene.render.filepath = str(folder / f"{path.stem}_{number}.png")
        bpy.ops.render.render(write_still=True)
        tiles.append(Image.open(scene.render.filepath).convert("RGBA"))
    return tiles


def main() -> None:
    args = parse_args()
    sheet = Image.new("RGB", (TILE * len(VIEWS), TILE * len(args.meshes)), "white")
    with tempfile.TemporaryDirectory() as folder:
        for row, path in enumerate(args.meshes):
            for column, tile in enumerate(render_views(path, Path(folder))):
                sheet.paste(tile, (TILE * column, TILE * row), tile)
    if args.out.suffix.lower() in (".jpg", ".jpeg"):
        sheet.save(args.out, quality=85)      # a tenth of the PNG's size, for bench_results/
    else:
        sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
