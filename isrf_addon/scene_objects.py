"""What the engine gives back, as Blender data: a segment's mesh as a coloured mesh
object, the dataset's cameras as camera objects, both in the "ISRF" collection and
placed with the scene's one engine-to-Blender transform (the engine applies it).

Arrays go in with `foreach_set` (no Python loop over vertices), so a 1M-vertex mesh
takes about a second.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

COLLECTION = "ISRF"
COLOUR_ATTRIBUTE = "isrf_colour"


def isrf_collection(scene: bpy.types.Scene, name: str = COLLECTION,
                    parent: bpy.types.Collection | None = None) -> bpy.types.Collection:
    """The named collection, created (and linked under `parent` or the scene) if missing."""
    collection = bpy.data.collections.get(name)
    if collection is None:
        collection = bpy.data.collections.new(name)
    owner = parent or scene.collection
    if collection.name not in owner.children:
        owner.children.link(collection)
    return collection


def mesh_object(name: str, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray,
                scene: bpy.types.Scene) -> bpy.types.Object:
    """A mesh object from vertices float32 [V, 3] (Blender frame), faces int32 [F, 3] and
    colours uint8 [V, 4] (sRGB), with a material that shows the colours."""
    vertices = np.ascontiguousarray(vertices, np.float32)
    faces = np.ascontiguousarray(faces, np.int32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"a mesh needs vertices [V, 3] and faces [F, 3], got {vertices.shape}, {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("a face refers to a vertex that does not exist")
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    colour = mesh.color_attributes.new(COLOUR_ATTRIBUTE, "BYTE_COLOR", "POINT")
    rgba = np.asarray(colours, np.float32).reshape(len(vertices), -1)[:, :4] / 255.0
    if rgba.shape[1] == 3:
        rgba = np.concatenate([rgba, np.ones((len(rgba), 1), np.float32)], 1)
    colour.data.foreach_set("color_srgb", rgba.ravel())
    mesh.color_attributes.active_color = colour
    mesh.update()
    mesh.materials.append(vertex_colour_material())
    obj = bpy.data.objects.new(name, mesh)
    isrf_collection(scene).objects.link(obj)
    return obj


def vertex_colour_material() -> bpy.types.Material:
    """One shared material: the mesh's colour attribute as the base colour."""
    name = "ISRF vertex colours"
    material = bpy.data.materials.get(name)
    if material is not None:
        return material
    material = bpy.data.materials.new(name)
    if material.node_tree is None:   # Blender < 5 makes node trees on request
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    shader = next(node for node in nodes if node.type == "BSDF_PRINCIPLED")
    attribute = nodes.new("ShaderNodeVertexColor")
    attribute.layer_name = COLOUR_ATTRIBUTE
    attribute.location = (shader.location.x - 300, shader.location.y)
    links.new(attribute.outputs["Color"], shader.inputs["Base Color"])
    shader.inputs["Roughness"].default_value = 0.8
    return material


def camera_objects(cameras: dict, scene: bpy.types.Scene, name: str) -> list[bpy.types.Object]:
    """The dataset's cameras (the engine's `cameras` answer) as camera objects in a
    collection `name` inside "ISRF", each with its photo as background image."""
    collection = isrf_collection(scene, name, parent=isrf_collection(scene))
    width, height = cameras["width"], cameras["height"]
    made = []
    for row in cameras["cameras"]:
        fx, fy, cx, cy = row["intrinsics"]
        data = bpy.data.cameras.new(f"{name} {row['index']:03d}")
        set_intrinsics(data, fx, fy, cx, cy, width, height)
        data.display_size = 0.1
        if row.get("file") and Path(row["file"]).is_file():
            image = bpy.data.images.load(row["file"], check_existing=True)
            background = data.background_images.new()
            background.image = image
            data.show_background_images = True
        obj = bpy.data.objects.new(data.name, data)
        obj.matrix_world = Matrix(row["c2w_blender"])
        obj["isrf_view"] = row["index"]
        collection.objects.link(obj)
        made.append(obj)
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    return made


def set_intrinsics(camera: bpy.types.Camera, fx: float, fy: float, cx: float, cy: float,
                   width: int, height: int) -> None:
    """Pinhole intrinsics (pixels; the render is width x height) as a Blender camera:
    the sensor fits the larger side, the principal point becomes the shift. Blender has
    one focal length: fy is used through the pixel aspect where it differs from fx."""
    camera.type = "PERSP"
    camera.sensor_fit = "AUTO"
    side = max(width, height)
    camera.sensor_width = 36.0
    camera.lens = fx / side * camera.sensor_width
    camera.shift_x = (width / 2 - cx) / side
    camera.shift_y = (cy - height / 2) / side
    if not math.isclose(fx, fy, rel_tol=1e-3):
        camera["isrf_fy"] = fy   # kept for the engine; Blender's render is fx-only
