"""Blender cameras as the engine's (isrf_addon/view_camera.py) agree with Cycles: small
emissive balls at known 3D points are rendered by Cycles, and where the engine's camera
(intrinsics + camera-to-world, as the add-on sends them) projects each point must be
where Cycles drew it, within 0.5 px, for every sensor fit, lens shift and image shape.

The 3D viewport itself cannot exist in background mode; its camera goes through the same
`engine_camera` from its projection matrix, which is Blender's for both.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from engine.segment.strokes import StrokeCamera
from engine.data.cameras import Cameras
from test_addon import REPO, run_python

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="needs bpy: pip install -e '.[dev]'"
)

POINTS = [(0.0, 0.0, 0.0), (0.9, 0.5, 0.3), (-0.8, -0.4, 0.6), (0.5, -0.7, -0.5), (-0.6, 0.8, -0.2)]
CASES = [  # (sensor fit, width, height, shift x, shift y)
    ("AUTO", 96, 64, 0.0, 0.0),
    ("AUTO", 64, 96, 0.1, -0.05),
    ("HORIZONTAL", 80, 80, -0.08, 0.12),
    ("VERTICAL", 96, 72, 0.15, 0.0),
]

SCRIPT = """
import json, sys
import bpy
sys.path.insert(0, {repo!r})
from isrf_addon.view_camera import object_camera

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.cycles.device = "CPU"
scene.render.film_transparent = True
scene.view_settings.view_transform = "Standard"
emit = bpy.data.materials.new("emit")
if emit.node_tree is None:
    emit.use_nodes = True
nodes = emit.node_tree.nodes
nodes.clear()
emission = nodes.new("ShaderNodeEmission")
output = nodes.new("ShaderNodeOutputMaterial")
emit.node_tree.links.new(emission.outputs[0], output.inputs[0])
for i, point in enumerate({points!r}):
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.03, location=point, segments=24, ring_count=12)
    bpy.context.object.data.materials.append(emit)
camera_data = bpy.data.cameras.new("camera")
camera_data.lens = 35
camera = bpy.data.objects.new("camera", camera_data)
scene.collection.objects.link(camera)
camera.location = (2.2, -3.1, 1.7)
direction = -camera.location.normalized()
camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
camera.rotation_euler.y += 0.12          # a roll, so that no axis lines up
camera.scale = (1.7, 1.7, 1.7)           # an object scale the engine camera must drop
scene.camera = camera
results = []
for index, (fit, width, height, shift_x, shift_y) in enumerate({cases!r}):
    camera_data.sensor_fit, camera_data.shift_x, camera_data.shift_y = fit, shift_x, shift_y
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    path = {out!r} + f"/render_{{index}}.png"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    bpy.context.view_layer.update()
    engine = object_camera(camera, bpy.context.evaluated_depsgraph_get(), width, height)
    results.append({{"camera": engine, "png": path}})
open({out!r} + "/cameras.json", "w").write(json.dumps(results))
"""


def blob_centres(alpha: np.ndarray, count: int) -> np.ndarray:
    """Alpha-weighted centres [count, 2] (x, y, continuous pixels) of the bright blobs."""
    from scipy import ndimage
    labels, found = ndimage.label(alpha > 0.05)
    assert found == count, f"found {found} balls, expected {count}"
    centres = ndimage.center_of_mass(alpha, labels, range(1, found + 1))   # (row, col)
    return np.array([(col + 0.5, row + 0.5) for row, col in centres])


def test_engine_cameras_project_points_where_cycles_draws_them(tmp_path):
    script = SCRIPT.format(repo=str(REPO), points=POINTS, cases=CASES, out=str(tmp_path))
    run_python(["-c", script], tmp_path / "blender")
    from PIL import Image
    for case, result in zip(CASES, json.loads((tmp_path / "cameras.json").read_text())):
        alpha = np.asarray(Image.open(result["png"]))[..., 3] / 255.0
        drawn = blob_centres(alpha, len(POINTS))
        # the Blender world is the scene's here (an identity engine-to-Blender transform)
        cameras = StrokeCamera(**{**result["camera"], "frame": "scene"}).resolve(Cameras(
            torch.eye(4)[None], torch.ones(1, 4), torch.zeros(1, 4), 1, 1))
        pixels, depth = cameras.project(0, torch.tensor(POINTS))
        assert (depth > 0).all()
        projected = pixels.numpy()
        # each drawn ball is matched to the nearest projected point
        distance = np.linalg.norm(drawn[:, None] - projected[None], axis=-1)
        assert sorted(distance.argmin(1).tolist()) == list(range(len(POINTS))), case
        assert distance.min(1).max() < 0.5, (case, distance.min(1))
