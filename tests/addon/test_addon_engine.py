"""The installed add-on in bpy 5.0.1 driving a real engine through its own operators:
start, open a dataset, train and distil as jobs, import the cameras, segment, import
the mesh, survive an engine crash, and never leave an engine behind.

bpy runs in a subprocess with a throwaway BLENDER_USER_RESOURCES (tests/test_addon.py);
in background mode no timer runs, so the scripts call the add-on's `runtime.pump()`
themselves until what they wait for has happened (with a deadline for failures).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from synthetic import SPHERES, TRAIN, make_sphere_scene
from test_addon import REPO, package, run_python  # noqa: F401  (package is a fixture)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="needs bpy: pip install -e '.[dev]'"
)

MODULE = "bl_ext.user_default.isrf"
PRELUDE = """
import json, sys, time
import bpy

bpy.ops.extensions.package_install_files(filepath={package!r}, repo="user_default",
                                         enable_on_install=True)
runtime = sys.modules["{module}.runtime"]
LINK = runtime.LINK
prefs = bpy.context.preferences.addons["{module}"].preferences
prefs.engine_command = {python!r}
prefs.device = "cpu"
settings = bpy.context.scene.isrf


def wait(condition, what, seconds=600):
    deadline = time.monotonic() + seconds
    while not condition():
        runtime.pump()
        if LINK.state == "failed":
            raise SystemExit(f"engine failed while waiting for {{what}}: {{LINK.message}}")
        if settings.message:
            raise SystemExit(f"error while waiting for {{what}}: {{settings.message}}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {{what}}")
        time.sleep(0.05)


def start_engine():
    assert bpy.ops.isrf.engine_start() == {{"FINISHED"}}
    wait(lambda: LINK.state == "connected", "the engine")
"""


def bpy_script(package: Path, body: str) -> str:
    return PRELUDE.format(package=str(package), module=MODULE, python=sys.executable) + \
        textwrap.dedent(body)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_sphere_scene(tmp_path_factory.mktemp("addon") / "spheres", views=40, size=48)


def largest_sphere_stroke(dataset: Path) -> tuple[dict, int]:
    ids = np.asarray(Image.open(dataset / "masks" / "r_000.png"))
    largest = int(np.bincount(ids[ids > 0]).argmax())
    rows, cols = np.nonzero(ids == largest)
    y, x = float(np.median(rows)) + 0.5, float(np.median(cols)) + 0.5
    return {"camera": {"view": 0}, "polylines": [[[x - 2, y], [x + 2, y]]], "radius": 2.0}, largest


def test_the_whole_loop_through_the_operators(package, dataset, tmp_path):
    stroke, sphere = largest_sphere_stroke(dataset)
    centre, radius, _ = SPHERES[sphere - 1]
    out = tmp_path / "result.json"
    script = bpy_script(package, f"""
        start_engine()
        assert LINK.engine.process.poll() is None
        settings.dataset = {str(dataset)!r}
        settings.overrides = {" ".join(TRAIN)!r}
        assert bpy.ops.isrf.scene_open() == {{"FINISHED"}}
        wait(lambda: settings.scene_id, "the scene")
        for kind in ("train", "distill"):
            assert bpy.ops.isrf.job_start(kind=kind) == {{"FINISHED"}}
            wait(lambda: settings.job_kind == kind and settings.job_stage == "done", kind)
        wait(lambda: "colour, features" in settings.summary, "the status")

        assert bpy.ops.isrf.cameras_import() == {{"FINISHED"}}
        wait(lambda: "ISRF cameras" in bpy.data.collections, "the cameras")
        cameras = bpy.data.collections["ISRF cameras"].objects
        engine_cameras = LINK.client.cameras(settings.scene_id)["cameras"]
        first = next(o for o in cameras if o["isrf_view"] == 0)
        error = max(abs(a - b) for row_a, row_b in zip(first.matrix_world, engine_cameras[0]["c2w_blender"])
                    for a, b in zip(row_a, row_b))

        assert bpy.ops.isrf.segment_add(name="ball") == {{"FINISHED"}}
        wait(lambda: len(settings.segments) == 1, "the segment list")
        settings.brush_radius = {stroke["radius"]!r}
        points = [{{"name": "", "position": point, "new_line": i == 0}}
                  for i, point in enumerate({stroke["polylines"][0]!r})]
        assert bpy.ops.isrf.stroke(points=points, view=0) == {{"FINISHED"}}
        wait(lambda: settings.last_stroke, "the stroke")
        wait(lambda: settings.segments[0].voxels > 0, "the segment's voxels")

        # the engine view of a camera (what a viewport gets): a preview, then at rest full
        modules = {{name: sys.modules[f"{MODULE}.{{name}}"]
                   for name in ("engine_view", "operators", "painter", "view_camera")}}
        engine_view, painter = modules["engine_view"], modules["painter"]
        settings.view_mode, settings.view_resolution = "OVERLAY", 1.0
        camera = modules["view_camera"].object_camera(first, bpy.context.evaluated_depsgraph_get(), 48, 48)
        state = engine_view.ViewState()
        engine_view.request_for_view(state, settings, camera, time.monotonic())
        wait(lambda: state.shown is not None, "the preview")
        qualities = [state.shown[1]]
        engine_view.BAND_ROWS = 16                 # the full render in three bands

        def rested():
            engine_view.request_for_view(state, settings, camera, time.monotonic() + 1)
            return state.shown[1] == "full"
        wait(rested, "the full render")
        qualities.append(state.shown[1])
        import numpy as np
        direct = LINK.client.render(settings.scene_id, {{"view": 0}}, mode="overlay",
                                    segment="ball")["picture"]
        view_error = float(np.abs(state.picture.astype(int) - direct.astype(int)).mean())

        # the painter: a drag in the viewport's pixels (y up), sent with its camera
        brush = painter.Painter({stroke["radius"]!r}, 48)
        line = [(x - 0.5, 48 - y - 0.5) for x, y in {stroke["polylines"][0]!r}]
        events = [("LEFTMOUSE", "PRESS", *line[0])] + [("MOUSEMOVE", "NOTHING", *p) for p in line[1:]] \
            + [("LEFTMOUSE", "RELEASE", *line[-1])]
        answers = [painter.handle(brush, kind, value, x, y, False, 48, 48) for kind, value, x, y in events]
        painted = answers[-1]
        before = settings.segments[0].strokes
        modules["operators"].send_stroke(None, bpy.context, camera, painted.polylines,
                                         painted.radius, painted.label)
        wait(lambda: settings.segments[0].strokes == before + 1, "the painted stroke")
        engine_view.request_for_view(state, settings, camera, time.monotonic())
        qualities.append(state.in_flight)          # the new mask: a new render at once
        assert bpy.ops.isrf.mesh_import() == {{"FINISHED"}}
        wait(lambda: "ball" in bpy.data.objects, "the mesh")
        ball = bpy.data.objects["ball"]
        corners = [list(c) for c in ball.bound_box]
        colours = ball.data.color_attributes.active_color
        result = {{"cameras": len(cameras), "camera_error": error, "voxels": settings.segments[0].voxels,
                  "corners": corners, "vertices": len(ball.data.vertices),
                  "coloured": colours is not None and colours.domain == "POINT",
                  "material": ball.data.materials[0].name,
                  "collection": ball.users_collection[0].name, "qualities": qualities,
                  "view_error": view_error, "view_shape": list(state.picture.shape)}}
        bpy.ops.wm.save_as_mainfile(filepath={str(tmp_path / "loop.blend")!r})

        process = LINK.engine.process
        process.kill()                               # the engine crashes
        process.wait()
        deadline = time.monotonic() + 60
        while LINK.state != "failed" and time.monotonic() < deadline:
            runtime.pump()
            time.sleep(0.05)
        result["after_crash"] = [LINK.state, LINK.message]
        start_engine()                               # and reconnects
        result["reconnected"] = LINK.client.health()["api"]
        pid = LINK.engine.process.pid
        bpy.ops.preferences.addon_disable(module="{MODULE}")
        result["engine_after_disable"] = LINK.engine is None and not __import__("psutil").pid_exists(pid)
        open({str(out)!r}, "w").write(json.dumps(result))
    """)
    run_python(["-c", script], tmp_path / "blender")
    result = json.loads(out.read_text())
    assert result["cameras"] == 40 and result["camera_error"] < 1e-5
    assert result["voxels"] > 0 and result["vertices"] > 100 and result["coloured"]
    assert (result["material"], result["collection"]) == ("ISRF vertex colours", "ISRF")
    assert result["qualities"] == ["preview", "full", True]
    assert result["view_shape"] == [48, 48, 4] and result["view_error"] < 1.0
    corners = np.array(result["corners"])   # transforms.json scenes come back in their own world
    low, high = corners.min(0), corners.max(0)
    assert np.all(np.abs(low - (np.array(centre) - radius)) < 0.1)
    assert np.all(np.abs(high - (np.array(centre) + radius)) < 0.1)
    assert result["after_crash"][0] == "failed" and "exited" in result["after_crash"][1]
    assert result["reconnected"] == 1 and result["engine_after_disable"]
    assert (tmp_path / "loop.blend").is_file()


def test_no_engine_outlives_a_killed_blender(package, tmp_path):
    ready = tmp_path / "engine.json"
    script = bpy_script(package, f"""
        start_engine()
        open({str(ready)!r}, "w").write(json.dumps({{"pid": LINK.engine.process.pid}}))
        time.sleep(3600)
    """)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    blender = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not ready.is_file():
            assert blender.poll() is None, blender.stdout.read().decode()[-3000:]
            try:
                blender.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        engine = psutil.Process(json.loads(ready.read_text())["pid"])
    finally:
        blender.send_signal(signal.SIGKILL)
        blender.wait()
    engine.wait(timeout=120)   # not our child: no exit code to read; TimeoutExpired fails the test
    assert not engine.is_running()   # --parent-pid: it saw Blender go and stopped


def test_a_missing_engine_command_is_one_clear_error(package, tmp_path):
    out = tmp_path / "result.json"
    script = bpy_script(package, f"""
        prefs.engine_command = "/no/such/python"
        try:
            bpy.ops.isrf.engine_start()
            message = "no error"
        except RuntimeError as error:
            message = str(error)
        open({str(out)!r}, "w").write(json.dumps({{"message": message, "state": LINK.state}}))
    """)
    run_python(["-c", script], tmp_path / "blender")
    result = json.loads(out.read_text())
    assert "/no/such/python: no such file" in result["message"] and result["state"] == "stopped"
