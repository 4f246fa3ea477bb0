"""Render one of the project's synthetic scenes (engine/data/synthetic_specs.py) with
Blender: the default tabletop, or the room (an opaque textured background).

Writes a NeRF / instant-ngp style data set with exact instance masks:

    OUT/transforms.json   cameras (camera-to-world, Blender convention) and scene bounds
    OUT/images/r_XXX.png  RGBA Cycles renders (default: transparent background; room: opaque)
    OUT/masks/r_XXX.png   8-bit instance ids (0 background, 1 table or floor, 2.. objects)
    OUT/objects.json      names of the ids
    OUT/meshes/NAME.ply   each object's true surface (triangles, world frame): the ground
                          truth scripts/bench_mesh.py scores extracted meshes against

Usage: .venv/bin/python scripts/make_default_scene.py --out scenes/default
       .venv/bin/python scripts/make_default_scene.py --scene room --out scenes/room
       (or python -m engine.data.synthetic_scene)
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
from pathlib import Path
from typing import Callable

import bpy
import numpy as np
import trimesh
from mathutils import Vector
from PIL import Image

from engine.data.synthetic_specs import SCENES, Ground, Prop, SceneSpec, Texture, World

AABB_PADDING = 0.05
BACKGROUND_ID = 0
GROUND_ID = 1


# ----------------------------------------------------------------------------- scene


def texture_nodes(tree: bpy.types.NodeTree, texture: Texture, coords_output: str) -> bpy.types.NodeSocket:
    """Texture coordinates -> mapping -> texture -> two-colour ramp; returns the ramp's
    colour socket. `coords_output`: the coordinates' socket (Object for surfaces,
    Generated for the world, where it is the direction)."""
    nodes, links = tree.nodes, tree.links
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
    links.new(coords.outputs[coords_output], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    links.new(tex.outputs[texture.output], ramp.inputs["Fac"])
    return ramp.outputs["Color"]


def textured_material(name: str, texture: Texture) -> bpy.types.Material:
    """A Principled material coloured by `texture`, sampled in object space (world units)."""
    material = bpy.data.materials.new(name)
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = texture.roughness
    material.node_tree.links.new(texture_nodes(material.node_tree, texture, "Object"),
                                 bsdf.inputs["Base Color"])
    return material


def finish_object(name: str, texture: Texture) -> bpy.types.Object:
    """Name, apply scale to and texture the active object."""
    obj = bpy.context.active_object
    obj.name = obj.data.name = name
    # Object-space texture coordinates must be in world units.
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    obj.data.materials.append(textured_material(name, texture))
    return obj


def add_ground(ground: Ground) -> bpy.types.Object:
    width, depth, thickness = ground.size
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, -thickness / 2))
    bpy.context.active_object.scale = (width, depth, thickness)
    return finish_object(ground.name, ground.texture)


def add_prop(prop: Prop, support: bpy.types.Object) -> bpy.types.Object:
    """Add `prop` resting on `support` (its lowest point on the support's top)."""
    getattr(bpy.ops.mesh, f"primitive_{prop.shape.kind}_add")(**prop.shape.params)
    obj = finish_object(prop.name, prop.texture)
    bpy.ops.object.shade_smooth_by_angle(angle=math.radians(40.0))
    obj.rotation_euler = [math.radians(deg) for deg in prop.rotation_deg]
    bpy.context.view_layer.update()
    lowest = world_bounds(obj)[0][2]
    top = world_bounds(support)[1][2]
    obj.location = (prop.xy[0], prop.xy[1], top - lowest)
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
    sit flush on their support and the scene box is tight.
    """
    world = world_vertices(obj)
    return world.min(axis=0), world.max(axis=0)


def check_layout(spec: SceneSpec, objects: dict[str, bpy.types.Object]) -> None:
    """Fail loudly if an edit to the spec makes props overlap or leave their support."""
    for support in [spec.ground.name, *(prop.name for prop in spec.props)]:
        standing = [prop.name for prop in spec.props if (prop.on or spec.ground.name) == support]
        support_lo, support_hi = world_bounds(objects[support])
        boxes = [world_bounds(objects[name]) for name in standing]
        for name, (lo, hi) in zip(standing, boxes):
            if (lo[:2] < support_lo[:2]).any() or (hi[:2] > support_hi[:2]).any():
                raise RuntimeError(f"{name} overhangs {support}")
        for i, (lo_a, hi_a) in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                lo_b, hi_b = boxes[j]
                gap = np.maximum(lo_b[:2] - hi_a[:2], lo_a[:2] - hi_b[:2]).max()
                if gap < spec.min_gap:
                    raise RuntimeError(f"{standing[i]} and {standing[j]} are only {gap:.3f} apart")


def add_lights(scene: bpy.types.Scene, world_spec: World, sun_energy: float) -> None:
    """A soft-shadowed sun, and the world: a uniform colour or an environment texture."""
    sun = bpy.data.lights.new("sun", type="SUN")
    sun.energy = sun_energy
    sun.angle = math.radians(12.0)  # the sun's angular diameter: wider is softer
    sun_obj = bpy.data.objects.new("sun", sun)
    sun_obj.rotation_euler = (math.radians(40.0), 0.0, math.radians(30.0))
    scene.collection.objects.link(sun_obj)

    world = bpy.data.worlds.new("world")
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*world_spec.color, 1.0)
    background.inputs["Strength"].default_value = world_spec.strength
    if world_spec.texture is not None:
        world.node_tree.links.new(texture_nodes(world.node_tree, world_spec.texture, "Generated"),
                                  background.inputs["Color"])
    scene.world = world


def add_camera(scene: bpy.types.Scene, size: int, fov_x_deg: float) -> bpy.types.Object:
    camera = bpy.data.cameras.new("camera")
    camera.sensor_fit = "HORIZONTAL"
    camera.angle_x = math.radians(fov_x_deg)
    obj = bpy.data.objects.new("camera", camera)
    scene.collection.objects.link(obj)
    scene.camera = obj
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    return obj


def build_scene(spec: SceneSpec, size: int
                ) -> tuple[bpy.types.Scene, bpy.types.Object, list[bpy.types.Object]]:
    """Build the scene from empty; returns (scene, camera, objects in mask-id order)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    objects = {spec.ground.name: add_ground(spec.ground)}
    for prop in spec.props:
        objects[prop.name] = add_prop(prop, objects[prop.on or spec.ground.name])
    check_layout(spec, objects)
    add_lights(scene, spec.world, spec.sun_energy)
    camera = add_camera(scene, size, spec.fov_x_deg)
    return scene, camera, [objects[name] for name in spec.objects()]


# ----------------------------------------------------------------------------- cameras


def camera_positions(spec: SceneSpec, views: int) -> list[Vector]:
    """Golden-angle spiral over the elevation band, area-uniform (uniform in sin elevation)."""
    low, high = (math.sin(math.radians(deg)) for deg in spec.elevation_band_deg)
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
        positions.append(Vector(spec.look_at) + spec.camera_radius * direction)
    return positions


def aim_camera(camera: bpy.types.Object, position: Vector, look_at: Vector) -> list[list[float]]:
    """Place the camera looking at `look_at` (down its -Z, +Y up); returns its camera-to-world."""
    camera.location = position
    camera.rotation_euler = (look_at - position).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()
    return [list(row) for row in camera.matrix_world]


# ----------------------------------------------------------------------------- rendering


def configure_output(scene: bpy.types.Scene, transparent: bool) -> None:
    """8-bit RGBA PNG; the background transparent (alpha 0) or the world's, opaque."""
    render = scene.render
    render.film_transparent = transparent
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
    scene.render.film_transparent = True  # background pixels: alpha 0, id 0
    scene.view_settings.view_transform = "Raw"
    scene.display.render_aa = "OFF"
    shading = scene.display.shading
    shading.light = "FLAT"
    shading.color_type = "OBJECT"
    shading.show_object_outline = False
    shading.show_cavity = False
    shading.show_shadows = False
    for mask_id, obj in enumerate(objects, start=GROUND_ID):
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
    look_at: Vector,
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
            c2w.append(aim_camera(camera, position, look_at))
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


def transforms_json(size: int, fov_x_deg: float, aabb: list[list[float]],
                    c2w: list[list[list[float]]]) -> dict:
    angle_x = math.radians(fov_x_deg)
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
        "objects": [{"name": obj.name, "mask_id": i} for i, obj in enumerate(objects, start=GROUND_ID)],
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


def make_scene(spec: SceneSpec, out_dir: str | Path, views: int = 72, size: int | None = None,
               samples: int = 32, seed: int = 0) -> None:
    """Render `spec` into `out_dir` (see the module docstring for the layout); size: the
    spec's own unless given."""
    size = size or spec.size
    out = Path(out_dir).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    scene, camera, objects = build_scene(spec, size)
    write_meshes(objects, out / "meshes")
    positions, look_at = camera_positions(spec, views), Vector(spec.look_at)
    configure_output(scene, spec.world.transparent)

    configure_cycles(scene, samples, seed)
    # Re-encoding drops the PNG text chunks in which Cycles stamps its render time.
    c2w = render_views(scene, camera, positions, look_at, "rgb", lambda src, name: Image.open(src).save(out / "images" / name))

    configure_id_pass(scene, objects)
    valid_ids = {BACKGROUND_ID, *range(GROUND_ID, GROUND_ID + len(objects))}
    render_views(
        scene, camera, positions, look_at, "mask", lambda src, name: decode_ids(src, valid_ids).save(out / "masks" / name)
    )

    write_json(out / "transforms.json", transforms_json(size, spec.fov_x_deg, scene_aabb(objects), c2w))
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
    parser.add_argument("--scene", choices=sorted(SCENES), default="default",
                        help="which scene (engine/data/synthetic_specs.py; default: default)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--views", type=int_at_least(1), default=72, help="number of cameras (default 72)")
    parser.add_argument("--size", type=int_at_least(16), default=None,
                        help="image width = height in px (default: the scene's, 200 or 400)")
    parser.add_argument("--samples", type=int_at_least(1), default=32, help="Cycles samples per pixel (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="Cycles sampling seed (default 0)")
    parser.add_argument("--meshes-only", action="store_true",
                        help="write only OUT/meshes/ (the objects' true surfaces), render nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    spec = SCENES[args.scene]
    if args.meshes_only:
        write_meshes(build_scene(spec, args.size or spec.size)[2], args.out.resolve() / "meshes")
    else:
        make_scene(spec, args.out, args.views, args.size, args.samples, args.seed)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
