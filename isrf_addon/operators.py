"""The add-on's operators. Each sends its engine call to the link's worker and returns at
once; the answer is applied on the UI thread (runtime.pump) to the scene it was made for.
Errors are reported and kept on the scene's settings (`message`), which the panel shows."""

from __future__ import annotations

import shlex
from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper

from . import properties, scene_objects
from .client import EngineError
from .preferences import engine_command, is_loopback, preferences, user_dir
from .runtime import LINK, redraw
from .view_camera import viewport_camera

FINISHED = ("done", "failed", "cancelled")


def _settings(scene_name: str):
    scene = bpy.data.scenes.get(scene_name)
    return None if scene is None else scene.isrf


def _on_error(scene_name: str):
    def failed(error: Exception) -> None:
        settings = _settings(scene_name)
        if settings is not None:
            settings.message = str(error)
        redraw()
    return failed


def _submit(operator, context, call, on_done) -> set[str]:
    """Queue `call(client)`; `on_done(settings, result)` runs on the UI thread. A refusal
    (no engine) is reported through `operator` (if any) and the panel."""
    scene_name = context.scene.name
    context.scene.isrf.message = ""

    def done(result) -> None:
        settings = _settings(scene_name)
        if settings is not None:
            on_done(settings, result)
        redraw()

    try:
        LINK.submit(call, done, _on_error(scene_name))
    except EngineError as error:
        if operator is not None:
            operator.report({"ERROR"}, str(error))
        context.scene.isrf.message = str(error)
        return {"CANCELLED"}
    return {"FINISHED"}


class _NeedsScene:
    @classmethod
    def poll(cls, context):
        return LINK.state == "connected" and bool(context.scene.isrf.scene_id)


class _NeedsSegment(_NeedsScene):
    @classmethod
    def poll(cls, context):
        settings = context.scene.isrf
        return super().poll(context) and settings.active_segment < len(settings.segments)


def active_segment(settings) -> str:
    return settings.segments[settings.active_segment].name


# ----- engine ----------------------------------------------------------------------
class ISRF_OT_engine_start(bpy.types.Operator):
    """Start the local engine, or connect to the one in the preferences"""
    bl_idname = "isrf.engine_start"
    bl_label = "Start Engine"

    def execute(self, context):
        prefs = preferences(context)
        if prefs.mode == "LOCAL":
            try:
                command = engine_command(prefs.engine_command)
            except ValueError as error:
                self.report({"ERROR"}, str(error))
                return {"CANCELLED"}
            device = None if prefs.device == "AUTO" else prefs.device
            LINK.start_local(command, user_dir("engine"), user_dir("logs") / "engine.log", device)
        else:
            if not is_loopback(prefs.host) and not bpy.app.online_access:
                self.report({"ERROR"}, f"{prefs.host} is not this machine and online access is "
                                       "off (Preferences > System > Network)")
                return {"CANCELLED"}
            LINK.connect(prefs.host, prefs.port, prefs.token)
        self.report({"INFO"}, LINK.message)
        return {"FINISHED"}


class ISRF_OT_engine_stop(bpy.types.Operator):
    """Stop the local engine (its jobs are checkpointed) or disconnect"""
    bl_idname = "isrf.engine_stop"
    bl_label = "Stop Engine"

    def execute(self, context):
        LINK.stop(wait=False)
        context.scene.isrf.scene_id = ""
        return {"FINISHED"}


class ISRF_OT_engine_log(bpy.types.Operator):
    """Open the local engine's log in a text block"""
    bl_idname = "isrf.engine_log"
    bl_label = "Engine Log"

    def execute(self, context):
        path = LINK.log_path or user_dir("logs") / "engine.log"
        if not Path(path).is_file():
            self.report({"ERROR"}, f"{path}: no log yet (start the engine first)")
            return {"CANCELLED"}
        text = next((t for t in bpy.data.texts if t.filepath == str(path)), None)
        if text is None:
            text = bpy.data.texts.load(str(path))
        else:
            text.from_string(Path(path).read_text(errors="replace"))
        self.report({"INFO"}, f"engine log: text block {text.name!r} ({path})")
        return {"FINISHED"}


# ----- scene -------------------------------------------------------------------------
class ISRF_OT_scene_open(bpy.types.Operator):
    """Open the dataset (or checkpoint) in the engine"""
    bl_idname = "isrf.scene_open"
    bl_label = "Open Scene"

    @classmethod
    def poll(cls, context):
        return LINK.state == "connected"

    def execute(self, context):
        settings = context.scene.isrf
        checkpoint = bpy.path.abspath(settings.checkpoint) if settings.checkpoint else None
        dataset = bpy.path.abspath(settings.dataset) if settings.dataset else None
        if not (checkpoint or dataset):
            self.report({"ERROR"}, "choose a dataset folder or a checkpoint first")
            return {"CANCELLED"}
        config = bpy.path.abspath(settings.config) if settings.config and not checkpoint else None
        try:
            overrides = shlex.split(settings.overrides) if not checkpoint else []
        except ValueError as error:
            self.report({"ERROR"}, f"overrides: {error}")
            return {"CANCELLED"}

        def open_scene(client):
            if checkpoint:
                status = client.open_scene(checkpoint=checkpoint)
            else:
                status = client.open_scene(dataset=dataset, config=config, overrides=overrides)
            return status, client.cameras(status["id"])

        return _submit(self, context, open_scene, _opened)


def _opened(settings, answer) -> None:
    status, cameras = answer
    settings.scene_id = status["id"]
    settings.to_blender = [value for row in cameras["to_blender"] for value in row]
    _set_status(settings, status)


def _set_status(settings, status: dict) -> None:
    stages = [name for name, done in (("colour", status["colour_trained"]),
                                      ("features", status["features_distilled"])) if done]
    settings.summary = (f"{status['images']} images {status['width']}x{status['height']}, "
                        f"trained: {', '.join(stages) or 'nothing yet'}")


def refresh(settings) -> None:
    """Ask for the scene's status and segments again (after a job or a stroke)."""
    scene_id, scene_name = settings.scene_id, settings.id_data.name

    def status(client):
        answer = client.scene(scene_id)
        segments = client.segments(scene_id) if answer["features_distilled"] else []
        return answer, segments

    def done(answer) -> None:
        state, segments = answer
        current = _settings(scene_name)   # looked up again: the scene may be gone
        if current is not None and current.scene_id == scene_id:
            _set_status(current, state)
            _set_segments(current, segments)
        redraw()

    LINK.submit(status, done, _on_error(scene_name))


def _set_segments(settings, rows: list[dict]) -> None:
    active = settings.segments[settings.active_segment].name \
        if settings.active_segment < len(settings.segments) else None
    settings.segments.clear()
    for row in rows:
        item = settings.segments.add()
        item.name, item.voxels, item.strokes = row["name"], row["voxels"], row["strokes"]
    names = [row["name"] for row in rows]
    settings.active_segment = names.index(active) if active in names else max(0, len(names) - 1)


class ISRF_OT_job_start(_NeedsScene, bpy.types.Operator):
    """Run a long engine step as a job, with progress and cancel"""
    bl_idname = "isrf.job_start"
    bl_label = "Start Job"

    kind: bpy.props.EnumProperty(items=[("train", "Train", "Train the colour field"),
                                        ("features", "Features", "Extract the images' 2D features"),
                                        ("distill", "Distil", "Distil the features into the field")])

    @classmethod
    def poll(cls, context):
        return super().poll(context) and not context.scene.isrf.running_job

    def execute(self, context):
        scene_id, kind = context.scene.isrf.scene_id, self.kind
        return _submit(self, context, lambda client: client.start_job(scene_id, kind), _follow)


def _follow(settings, job: dict) -> None:
    _set_job(settings, job)
    scene_name = settings.id_data.name

    def update(snapshot: dict) -> None:
        current = _settings(scene_name)
        if current is None or current.job_id != snapshot["id"]:
            return
        _set_job(current, snapshot)
        if snapshot["state"] in FINISHED:
            refresh(current)
        redraw()

    LINK.follow_job(job["id"], update)


def _set_job(settings, job: dict) -> None:
    settings.job_id, settings.job_kind = job["id"], job["kind"]
    finished = job["state"] in FINISHED
    settings.job_stage = job["state"] if finished else (job["stage"] or job["state"])
    settings.job_progress = job["progress"]
    settings.job_eta = job["eta_seconds"] if job["eta_seconds"] is not None else -1
    settings.job_metrics = ", ".join(f"{k} {v}" for k, v in job["metrics"].items())
    if job["state"] == "done":
        settings.job_message = f"{job['kind']} done: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (job["result"] or {}).items() if not isinstance(v, (list, dict)))
    elif finished:
        settings.job_message = f"{job['kind']} {job['state']}: {job['error']}"


class ISRF_OT_job_cancel(bpy.types.Operator):
    """Cancel the running job (training keeps a checkpoint to resume from)"""
    bl_idname = "isrf.job_cancel"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        return LINK.state == "connected" and context.scene.isrf.running_job

    def execute(self, context):
        job_id = context.scene.isrf.job_id
        return _submit(self, context, lambda client: client.cancel_job(job_id), lambda s, job: None)


class ISRF_OT_cameras_import(_NeedsScene, bpy.types.Operator):
    """Add the dataset's cameras, with their photos as background images"""
    bl_idname = "isrf.cameras_import"
    bl_label = "Import Cameras"

    def execute(self, context):
        scene_id, scene_name = context.scene.isrf.scene_id, context.scene.name

        def imported(settings, cameras) -> None:
            made = scene_objects.camera_objects(cameras, bpy.data.scenes[scene_name], "ISRF cameras")
            settings.info = f"imported {len(made)} cameras"
            if made and bpy.data.scenes[scene_name].camera is None:
                bpy.data.scenes[scene_name].camera = made[0]

        return _submit(self, context, lambda client: client.cameras(scene_id), imported)


# ----- segments ----------------------------------------------------------------------
class ISRF_OT_segment_add(_NeedsScene, bpy.types.Operator):
    """Add a segment (paint strokes on it to select an object)"""
    bl_idname = "isrf.segment_add"
    bl_label = "Add Segment"

    name: bpy.props.StringProperty(name="Name", default="object")

    def execute(self, context):
        settings = context.scene.isrf
        taken = {item.name for item in settings.segments}
        name, number = self.name.strip() or "object", 1
        while name in taken:
            number += 1
            name = f"{self.name.strip() or 'object'} {number}"
        scene_id = settings.scene_id
        return _submit(self, context, lambda client: client.add_segment(scene_id, name),
                       lambda s, row: refresh(s))


class ISRF_OT_segment_remove(_NeedsSegment, bpy.types.Operator):
    """Delete the active segment"""
    bl_idname = "isrf.segment_remove"
    bl_label = "Delete Segment"

    def execute(self, context):
        settings = context.scene.isrf
        scene_id, name = settings.scene_id, active_segment(settings)
        return _submit(self, context, lambda client: client.delete_segment(scene_id, name),
                       lambda s, _: refresh(s))


class ISRF_OT_segment_history(_NeedsSegment, bpy.types.Operator):
    """Undo, redo or reset the active segment's strokes"""
    bl_idname = "isrf.segment_history"
    bl_label = "Segment History"

    action: bpy.props.EnumProperty(items=[("undo", "Undo", ""), ("redo", "Redo", ""),
                                          ("reset", "Reset", "")])

    def execute(self, context):
        settings = context.scene.isrf
        scene_id, name, action = settings.scene_id, active_segment(settings), self.action
        return _submit(self, context, lambda client: getattr(client, action)(scene_id, name),
                       lambda s, row: refresh(s))


class ISRF_OT_stroke(_NeedsSegment, bpy.types.Operator):
    """Paint a stroke on the active segment, in a dataset camera's pixels or the viewport's"""
    bl_idname = "isrf.stroke"
    bl_label = "Stroke"
    bl_options = {"INTERNAL"}

    points: bpy.props.CollectionProperty(type=properties.ISRF_StrokePoint)
    view: bpy.props.IntProperty(name="Dataset view", default=-1, min=-1,
                                description="The dataset camera the points are in (-1: this viewport)")
    negative: bpy.props.BoolProperty(name="Negative", description="Remove what the stroke selects")

    def execute(self, context):
        settings = context.scene.isrf
        if not self.points:
            self.report({"ERROR"}, "a stroke needs at least one point")
            return {"CANCELLED"}
        if self.view >= 0:
            camera = {"view": self.view}
        else:
            try:
                camera = viewport_camera(context.region, context.region_data)
            except (AttributeError, ValueError) as error:
                self.report({"ERROR"}, f"paint in a 3D viewport: {error}")
                return {"CANCELLED"}
        polylines = []
        for point in self.points:
            if point.new_line or not polylines:
                polylines.append([])
            polylines[-1].append(list(point.position))
        label = "negative" if self.negative else "positive"
        return send_stroke(self, context, camera, polylines, settings.brush_radius, label)


def send_stroke(operator, context, camera: dict, polylines, radius: float, label: str) -> set[str]:
    """Paint a stroke on the active segment (pixels of `camera`, the engine's frame);
    the segment list and the last stroke's figures update when the engine answers."""
    settings = context.scene.isrf
    scene_id, name = settings.scene_id, active_segment(settings)

    def painted(settings, result) -> None:
        settings.last_stroke = f"{result['mask']} voxels, {result['seconds']:.2f} s"
        refresh(settings)

    return _submit(operator, context, lambda client: client.stroke(
        scene_id, name, camera, polylines, radius, label), painted)


# ----- meshes ------------------------------------------------------------------------
def _mesh_overrides(settings) -> dict:
    return {"max_faces": settings.mesh_max_faces, "surface_smoothing": settings.mesh_smoothing,
            "largest_component": settings.mesh_largest}


class ISRF_OT_mesh_import(_NeedsSegment, bpy.types.Operator):
    """Add the active segment's mesh to the scene, with its colours"""
    bl_idname = "isrf.mesh_import"
    bl_label = "Import Mesh"

    def execute(self, context):
        settings = context.scene.isrf
        scene_id, name, scene_name = settings.scene_id, active_segment(settings), context.scene.name
        overrides = _mesh_overrides(settings)

        def imported(settings, mesh) -> None:
            scene = bpy.data.scenes[scene_name]
            scene_objects.mesh_object(name, mesh["vertices"], mesh["faces"], mesh["colours"], scene)
            settings.info = f"imported {name!r}: {len(mesh['vertices'])} vertices"

        return _submit(self, context, lambda client: client.mesh(scene_id, name, overrides=overrides),
                       imported)


class ISRF_OT_mesh_export(_NeedsSegment, ExportHelper, bpy.types.Operator):
    """Write the active segment's mesh to a PLY or GLB file"""
    bl_idname = "isrf.mesh_export"
    bl_label = "Export Mesh"

    filename_ext = ".glb"
    filter_glob: bpy.props.StringProperty(default="*.glb;*.ply", options={"HIDDEN"})
    format: bpy.props.EnumProperty(items=[("glb", "GLB", ""), ("ply", "PLY", "")], default="glb")

    def check(self, context):
        self.filename_ext = f".{self.format}"
        return super().check(context)

    def execute(self, context):
        settings = context.scene.isrf
        scene_id, name = settings.scene_id, active_segment(settings)
        path = Path(self.filepath).with_suffix(f".{self.format}")
        overrides = _mesh_overrides(settings)

        def written(settings, path) -> None:
            settings.info = f"wrote {path}"

        return _submit(self, context, lambda client: client.export_mesh(
            scene_id, name, path, overrides=overrides), written)


CLASSES = (ISRF_OT_engine_start, ISRF_OT_engine_stop, ISRF_OT_engine_log, ISRF_OT_scene_open,
           ISRF_OT_job_start, ISRF_OT_job_cancel, ISRF_OT_cameras_import, ISRF_OT_segment_add,
           ISRF_OT_segment_remove, ISRF_OT_segment_history, ISRF_OT_stroke, ISRF_OT_mesh_import,
           ISRF_OT_mesh_export)
