"""Render the project's default scene: a wooden table with six textured objects.

Writes a NeRF / instant-ngp style data set with exact instance masks:

    OUT/transforms.json   cameras (camera-to-world, Blender convention) and scene bounds
    OUT/images/r_XXX.png  RGBA Cycles renders, transparent background
    OUT/masks/r_XXX.png   8-bit instance ids (0 background, 1 table, 2.. objects)
    OUT/objects.json      names of the ids
    OUT/meshes/NAME.ply   each object's true surface (triangles, world frame): the ground
                          truth scripts/bench_mesh.py scores extracted meshes against

Usage: .venv/bin/python scripts/make_default_scene.py --out scenes/default
       (or python -m engine.data.default_scene)
       (--meshes-only: write only OUT/meshes/, for a scene rendered before they existed)

A re-run gives byte-identical masks and JSON files. The images repeat except for a few
pixels one level apart: Cycles' path tracing is exact, but OpenImageDenoise's result
varies in the last bit between processes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import bpy
import numpy as np
import trimesh
from mathutils import Vector
from PIL import Image

TABLE_SIZE = (2.4, 1.8, 0.08)  # x, y, thickness; the top is at z = 0
LOOK_AT = Vector((0.0, 0.0, 0.15))
FOV_X_DEG = 40.0
# Smallest radius (in steps of 0.2) that keeps the whole table inside the 40 degree view
# from every camera of the band, with a margin (at least 9 px of 200 in the 72 views).
CAMERA_RADIUS = 4.8
ELEVATION_BAND_DEG = (20.0, 70.0)
AABB_PADDING = 0.05
MIN_OBJECT_GAP = 0.15  # clearance between the objects' footprints on the table
BACKGROUND_ID = 0
TABLE_ID = 1


@dataclass(frozen=True)
class Texture:
    """A procedural texture whose scalar output is mapped onto a two-colour ramp."""

    node: str  # shader node type, e.g. "ShaderNodeTexChecker"
    output: str  # the scalar output socket that drives the ramp
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]  # linear RGB
    inputs: dict[str, float] = field(default_factory=dict)  # input socket defaults
    settings: dict[str, str | int] = field(default_factory=dict)  # node properties
    ramp_stops: tuple[float, float] = (0.0, 1.0)  # output values given the two colours
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # of the texture space
    roughness: float = 0.5


@dataclass(frozen=True)
class Prop:
    """An object standing on the table."""

    name: str
    add_mesh: Callable[[], object]  # a bpy.ops primitive: adds and selects the mesh
    xy: tuple[float, float]
    texture: Texture
    yaw_deg: float = 0.0


WOOD = Texture(
    "ShaderNodeTexWave",
    "Fac",
    ((0.16, 0.07, 0.025), (0.42, 0.22, 0.09)),
    inputs={"Scale": 2.5, "Distortion": 6.0, "Detail": 2.0, "Detail Scale": 1.5},
    settings={"wave_type": "BANDS", "bands_direction": "X"},
    roughness=0.6,
)

PROPS = (
    Prop(
        "checker_cube",
        lambda: bpy.ops.mesh.primitive_cube_add(size=0.42),
        (-0.78, 0.42),
        Texture("ShaderNodeTexChecker", "Fac", ((0.75, 0.05, 0.04), (0.85, 0.8, 0.65)), {"Scale": 8.0}),
        yaw_deg=20.0,
    ),
    Prop(
        "voronoi_sphere",
        lambda: bpy.ops.mesh.primitive_uv_sphere_add(radius=0.26, segments=48, ring_count=24),
        (0.0, 0.42),
        Texture("ShaderNodeTexVoronoi", "Distance", ((0.02, 0.08, 0.6), (0.5, 0.8, 0.95)), {"Scale": 9.0}),
    ),
    Prop(
        "brick_cylinder",
        lambda: bpy.ops.mesh.primitive_cylinder_add(radius=0.18, depth=0.5, vertices=48),
        (0.78, 0.42),
        Texture(
            "ShaderNodeTexBrick",
            "Fac",
            ((0.6, 0.22, 0.05), (0.75, 0.72, 0.68)),
            {"Scale": 1.5, "Mortar Size": 0.03},
            rotation_deg=(90.0, 0.0, 0.0),  # the pattern is planar: stand it up, rows horizontal
            roughness=0.8,
        ),
    ),
    Prop(
        "wave_cone",
        lambda: bpy.ops.mesh.primitive_cone_add(radius1=0.25, radius2=0.0, depth=0.55, vertices=48),
        (-0.78, -0.42),
        Texture(
            "ShaderNodeTexWave",
            "Fac",
            ((0.08, 0.35, 0.05), (0.85, 0.8, 0.1)),
            {"Scale": 2.0},
            settings={"wave_type": "RINGS"},
        ),
    ),
    Prop(
        "magic_torus",
        lambda: bpy.ops.mesh.primitive_torus_add(
            major_radius=0.2, minor_radius=0.08, major_segments=48, minor_segments=16
        ),
        (0.0, -0.42),
        Texture(
            "ShaderNodeTexMagic",
            "Fac",
            ((0.35, 0.03, 0.45), (0.95, 0.45, 0.7)),
            {"Scale": 5.0},
            settings={"turbulence_depth": 3},
            ramp_stops=(0.3, 0.7),
        ),
    ),
    Prop(
        "noise_monkey",
        lambda: bpy.ops.mesh.primitive_monkey_add(size=0.4),
        (0.78, -0.42),
        Texture(
            "ShaderNodeTexNoise",
            "Fac",
            ((0.02, 0.3, 0.3), (0.7, 0.95, 0.85)),
            {"Scale": 6.0, "Detail": 1.0},
            ramp_stops=(0.35, 0.65),
            roughness=0.35,
        ),
        yaw_deg=-25.0,
    ),
)


# ----------------------------------------------------------------------------- scene


def textured_material(name: str, texture: Texture) -> bpy.types.Material:
    """A Principled material coloured by `texture`, sampled in object space (world units)."""
    material = bpy.data.materials.new(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = texture.roughness

    coords = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = [math.radians(deg) for deg in texture.rotation_deg]
    tex = nodes.new(texture.node)
    for prop, value in texture.settings.items():
        setattr(tex, prop, value)
    for socket, value in texture.inputs.items():
        tex.inputs[socket].default_value = value
    ramp = nodes.new("ShaderNodeValToRGB")
    for element, stop, rgb in zip(ramp.color_ramp.elements, texture.ramp_stops, texture.colors):
        element.position = stop
        element.color = (*rgb, 1.0)

    links.new(coords.outputs["Object"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    links.new(tex.outputs[texture.output], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def finish_object(name: str, texture: Texture) -> bpy.types.Object:
    """Name, apply scale to and texture the active object."""
    obj = bpy.context.active_object
    obj.name = obj.data.name = name
    # Object-space texture coordinates must be in world units.
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    obj.data.materials.append(textured_material(name, texture))
    return obj


def add_table() -> bpy.types.Object:
    width, depth, thickness = TABLE_SIZE
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, -thickness / 2))
    bpy.context.active_object.scale = (width, depth, thickness)
    return finish_object("table", WOOD)


def add_prop(prop: Prop) -> bpy.types.Object:
    """Add `prop` resting on the table top (its lowest point at z = 0)."""
    prop.add_mesh()
    obj = finish_object(prop.name, prop.texture)
    bpy.ops.object.shade_smooth_by_angle(angle=math.radians(40.0))
    obj.rotation_euler.z = math.radians(prop.yaw_deg)
    bpy.context.view_layer.update()
    lowest = world_bounds(obj)[0][2]
    obj.location = (prop.xy[0], prop.xy[1], -lowest)
    bpy.context.view_layer.update()
    return obj


def world_vertices(obj: bpy.types.Object, mesh: bpy.types.Mesh | None = None) -> np.ndarray:
    """[N, 3] world coordinates of the vertices of `mesh` (default: the object's own)."""
    mesh = obj.data if mesh is None else mesh
    coords = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
    mesh.vertices.foreach_get("co", coords)
    rotation = np.array(obj.matrix_world.to_3x3())
    return coords.reshape(-1, 3) @ rotation.T + np.array(obj.matrix_world.translation)


def world_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) world coordinates of the mesh's vertices.

    Exact (vertices, not the corners of the local bounding box), so that rotated objects
    sit flush on the table and the scene box is tight.
    """
    world = world_vertices(obj)
    return world.min(axis=0), world.max(axis=0)


def check_layout(table: bpy.types.Object, props: list[bpy.types.Object]) -> None:
    """Fail loudly if an edit to PROPS makes objects overlap or leave the table top."""
    table_lo, table_hi = world_bounds(table)
    boxes = [world_bounds(obj) for obj in props]
    for obj, (lo, hi) in zip(props, boxes):
        if (lo[:2] < table_lo[:2]).any() or (hi[:2] > table_hi[:2]).any():
            raise RuntimeError(f"{obj.name} overhangs the table")
    for i, (lo_a, hi_a) in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            lo_b, hi_b = boxes[j]
            gap = np.maximum(lo_b[:2] - hi_a[:2], lo_a[:2] - hi_b[:2]).max()
            if gap < MIN_OBJECT_GAP:
                raise RuntimeError(f"{props[i].name} and {props[j].name} are only {gap:.3f} apart")


def add_lights(scene: bpy.types.Scene) -> None:
    """A soft-shadowed sun and a uniform world colour for the ambient light."""
    sun = bpy.data.lights.new("sun", type="SUN")
    sun.energy = 3.0
    sun.angle = math.radians(12.0)  # the sun's angular diameter: wider is softer
    sun_obj = bpy.data.objects.new("sun", sun)
    sun_obj.rotation_euler = (math.radians(40.0), 0.0, math.radians(30.0))
    scene.collection.objects.link(sun_obj)

    world = bpy.data.worlds.new("ambient")
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.32, 0.36, 1.0)
    scene.world = world


def add_camera(scene: bpy.types.Scene, size: int) -> bpy.types.Object:
    camera = bpy.data.cameras.new("camera")
    camera.sensor_fit = "HORIZONTAL"
    camera.angle_x = math.radians(FOV_X_DEG)
    obj = bpy.data.objects.new("camera", camera)
    scene.collection.objects.link(obj)
    scene.camera = obj
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    return obj


def build_scene(size: int) -> tuple[bpy.types.Scene, bpy.types.Object, list[bpy.types.Object]]:
    """Build the scene from empty; returns (scene, camera, [table, *props] in mask-id order)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    table = add_table()
    props = [add_prop(prop) for prop in PROPS]
    check_layout(table, props)
    add_lights(scene)
    camera = add_camera(scene, size)
    return scene, camera, [table, *props]


# ----------------------------------------------------------------------------- cameras


def camera_positions(views: int) -> list[Vector]:
    """Golden-angle spiral over the elevation band, area-uniform (uniform in sin elevation)."""
    low, high = (math.sin(math.radians(deg)) for deg in ELEVATION_BAND_DEG)
    golden_angle = math.pi * (3.0 - math.sqrt(5.0))
    positions = []
    for i in range(views):
        elevation = math.asin(low + (high - low) * (i + 0.5) / views)
        azimuth = i * golden_angle
        direction = Vector(
            (
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            )
        )
        positions.append(LOOK_AT + CAMERA_RADIUS * direction)
    return positions


def aim_camera(camera: bpy.types.Object, position: Vector) -> list[list[float]]:
    """Place the camera looking at LOOK_AT (down its -Z, +Y up); returns its camera-to-world."""
    camera.location = position
    camera.rotation_euler = (LOOK_AT - position).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()
    return [list(row) for row in camera.matrix_world]


# ----------------------------------------------------------------------------- rendering


def configure_output(scene: bpy.types.Scene) -> None:
    """Settings shared by both passes: 8-bit RGBA PNG, transparent background."""
    render = scene.render
    render.film_transparent = True
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    render.image_settings.color_depth = "8"
    render.dither_intensity = 0.0  # dither noise is no part of the scene


def configure_cycles(scene: bpy.types.Scene, samples: int, seed: int) -> None:
    scene.render.engine = "CYCLES"
    scene.view_settings.view_transform = "Standard"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.seed = seed
    cycles.use_animated_seed = False
    cycles.max_bounces = 4  # a matte scene: more bounces only cost time
    import _cycles  # Cycles' compiled module, importable once bpy is: knows how it was built

    cycles.use_denoising = _cycles.with_openimagedenoise
    if cycles.use_denoising:
        cycles.denoiser = "OPENIMAGEDENOISE"


def configure_id_pass(scene: bpy.types.Scene, objects: list[bpy.types.Object]) -> None:
    """Workbench, flat object colours, no anti-aliasing: each pixel is one object's id.

    Object i (mask id i + 1) gets the colour (id / 255, 0, 0); the 'Raw' view transform
    writes it unchanged, so the red channel of the PNG is the id.
    """
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.view_settings.view_transform = "Raw"
    scene.display.render_aa = "OFF"
    shading = scene.display.shading
    shading.light = "FLAT"
    shading.color_type = "OBJECT"
    shading.show_object_outline = False
    shading.show_cavity = False
    shading.show_shadows = False
    for mask_id, obj in enumerate(objects, start=TABLE_ID):
        obj.color = (mask_id / 255.0, 0.0, 0.0, 1.0)


def render_to(scene: bpy.types.Scene, path: Path) -> None:
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def decode_ids(path: Path, valid_ids: set[int]) -> Image.Image:
    """Turn an id-pass render into a mode "L" mask; refuse anything that is not exact."""
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    alpha, red = rgba[..., 3], rgba[..., 0]
    if not np.isin(alpha, (0, 255)).all() or rgba[..., 1:3].any():
        raise RuntimeError(f"{path}: id pass is not flat (anti-aliased or shaded)")
    ids = np.where(alpha == 255, red, BACKGROUND_ID).astype(np.uint8)
    unknown = set(np.unique(ids).tolist()) - valid_ids
    if unknown:
        raise RuntimeError(f"{path}: unknown ids {sorted(unknown)}")
    return Image.fromarray(ids, mode="L")


def frame_name(index: int) -> str:
    return f"r_{index:03d}.png"


def render_views(
    scene: bpy.types.Scene,
    camera: bpy.types.Object,
    positions: list[Vector],
    stage: str,
    write: Callable[[Path, str], None],
) -> list[list[list[float]]]:
    """Render every view to a scratch file and pass it to `write(scratch_path, frame_name)`.

    Returns the camera-to-world matrices. Progress goes to stderr, one line per view.
    """
    start = time.perf_counter()
    c2w = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, position in enumerate(positions):
            c2w.append(aim_camera(camera, position))
            rendered = Path(scratch) / frame_name(i)
            render_to(scene, rendered)
            write(rendered, frame_name(i))
            elapsed = time.perf_counter() - start
            print(f"[{stage}] view {i + 1}/{len(positions)}  {elapsed:.1f} s", file=sys.stderr, flush=True)
    return c2w


# ----------------------------------------------------------------------------- output


def scene_aabb(objects: list[bpy.types.Object]) -> list[list[float]]:
    bounds = [world_bounds(obj) for obj in objects]
    lo = np.min([b[0] for b in bounds], axis=0) - AABB_PADDING
    hi = np.max([b[1] for b in bounds], axis=0) + AABB_PADDING
    return [[round(float(v), 4) for v in lo], [round(float(v), 4) for v in hi]]


def transforms_json(size: int, aabb: list[list[float]], c2w: list[list[list[float]]]) -> dict:
    angle_x = math.radians(FOV_X_DEG)
    focal = 0.5 * size / math.tan(angle_x / 2)
    frames = [
        {
            "file_path": f"images/{frame_name(i)}",
            "transform_matrix": matrix,
            "mask_path": f"masks/{frame_name(i)}",
        }
        for i, matrix in enumerate(c2w)
    ]
    return {
        "camera_angle_x": angle_x,
        "fl_x": focal,
        "fl_y": focal,
        "cx": size / 2,
        "cy": size / 2,
        "w": size,
        "h": size,
        "aabb": aabb,
        "frames": frames,
    }


def objects_json(objects: list[bpy.types.Object]) -> dict:
    return {
        "background_id": BACKGROUND_ID,
        "objects": [{"name": obj.name, "mask_id": i} for i, obj in enumerate(objects, start=TABLE_ID)],
    }


def write_meshes(objects: list[bpy.types.Object], out_dir: Path) -> None:
    """Each object's evaluated mesh, triangulated, in world coordinates -> NAME.ply."""
    out_dir.mkdir(parents=True, exist_ok=True)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for obj in objects:
        mesh = obj.evaluated_get(depsgraph).to_mesh()
        mesh.calc_loop_triangles()
        triangles = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", triangles)
        trimesh.Trimesh(world_vertices(obj, mesh), triangles.reshape(-1, 3),
                        process=False).export(out_dir / f"{obj.name}.ply")
        obj.evaluated_get(depsgraph).to_mesh_clear()


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_default_scene(out_dir: str | Path, views: int = 72, size: int = 200, samples: int = 32, seed: int = 0) -> None:
    """Render the default scene into `out_dir` (see the module docstring for the layout)."""
    out = Path(out_dir).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    scene, camera, objects = build_scene(size)
    write_meshes(objects, out / "meshes")
    positions = camera_positions(views)
    configure_output(scene)

    configure_cycles(scene, samples, seed)
    # Re-encoding drops the PNG text chunks in which Cycles stamps its render time.
    c2w = render_views(scene, camera, positions, "rgb", lambda src, name: Image.open(src).save(out / "images" / name))

    configure_id_pass(scene, objects)
    valid_ids = {BACKGROUND_ID, *range(TABLE_ID, TABLE_ID + len(objects))}
    render_views(
        scene, camera, positions, "mask", lambda src, name: decode_ids(src, valid_ids).save(out / "masks" / name)
    )

    write_json(out / "transforms.json", transforms_json(size, scene_aabb(objects), c2w))
    write_json(out / "objects.json", objects_json(objects))


# ----------------------------------------------------------------------------- command line


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--views", type=int_at_least(1), default=72, help="number of cameras (default 72)")
    parser.add_argument("--size", type=int_at_least(16), default=200, help="image width = height in px (default 200)")
    parser.add_argument("--samples", type=int_at_least(1), default=32, help="Cycles samples per pixel (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="Cycles sampling seed (default 0)")
    parser.add_argument("--meshes-only", action="store_true",
                        help="write only OUT/meshes/ (the objects' true surfaces), render nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.meshes_only:
        write_meshes(build_scene(args.size)[2], args.out.resolve() / "meshes")
    else:
        make_default_scene(args.out, args.views, args.size, args.samples, args.seed)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
