"""The server's state: open scenes, the device gate and the job runner, and what each
request does, as calls on `Scene` (the same the CLI makes). No HTTP here: app.py maps
these calls and their `ApiError`s to routes and status codes.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from engine.config import MeshConfig, load_config
from engine.data.frames import scene_camera_to_blender, transform_points
from engine.pictures import picture
from engine.scene import Scene
from engine.serve import schemas
from engine.serve.jobs import DeviceGate, Job, JobRunner


class ApiError(Exception):
    """A request that cannot be served: HTTP status and one line naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class OpenScene:
    id: str
    scene: Scene
    busy_segments: dict[str, str] = dataclasses.field(default_factory=dict)
    """Segment -> id of the job (refine) that owns it until it finishes."""
    training_job: str | None = None
    """The train / distill job changing this scene's fields, while it runs."""


class Workspace:
    def __init__(self, state_dir: Path, device: str | None = None):
        self.state_dir = Path(state_dir)
        self.device = device
        self.gate = DeviceGate()
        self.jobs = JobRunner(self.gate)
        self.scenes: dict[str, OpenScene] = {}
        self._lock = threading.Lock()

    # ----- scenes -----------------------------------------------------------------
    def open_scene(self, request: schemas.OpenScene) -> dict:
        scene_id = uuid.uuid4().hex[:8]
        if request.checkpoint is not None:
            path = Path(request.checkpoint).expanduser()
            if not path.is_file():
                raise ApiError(404, f"checkpoint: {path}: no such file")
            scene = Scene.from_checkpoint(path, self.device)
        else:
            dataset = Path(request.dataset).expanduser()
            if not dataset.exists():
                raise ApiError(404, f"dataset: {dataset}: no such folder")
            if request.config is not None and not Path(request.config).expanduser().is_file():
                raise ApiError(404, f"config: {request.config}: no such file")
            out_dir = request.out_dir or str(self.state_dir / "runs" / f"{dataset.name}-{scene_id}")
            overrides = [f"data.path={str(dataset)!r}", *request.overrides,
                         f"train.out_dir={str(Path(out_dir).expanduser())!r}"]
            scene = Scene(load_config(request.config, overrides), self.device)
        scene.data   # load (and check) the images now, not in the first render
        with self._lock:
            for other in self.scenes.values():
                if other.scene.checkpoint_path.resolve() == scene.checkpoint_path.resolve():
                    raise ApiError(409, f"scene {other.id} is open with the same run folder "
                                        f"({scene.checkpoint_path.parent}): its checkpoints "
                                        "would overwrite each other; close it first")
            self.scenes[scene_id] = OpenScene(scene_id, scene)
        return self.scene_status(scene_id)

    def get(self, scene_id: str) -> OpenScene:
        item = self.scenes.get(scene_id)
        if item is None:
            raise ApiError(404, f"no scene {scene_id!r} (open scenes: {', '.join(self.scenes) or 'none'})")
        return item

    def scene_status(self, scene_id: str) -> dict:
        item = self.get(scene_id)
        status = item.scene.status()
        jobs = [job.id for job in self.jobs.active(scene_id)]
        return {"id": scene_id, **status, "jobs": jobs, "memory": _memory(item.scene.device)}

    def list_scenes(self) -> list[dict]:
        return [self.scene_status(scene_id) for scene_id in list(self.scenes)]

    def close_scene(self, scene_id: str) -> None:
        self.get(scene_id)
        for job in self.jobs.active(scene_id):
            self.jobs.cancel(job)
        with self._lock:
            del self.scenes[scene_id]

    def cameras(self, scene_id: str) -> dict:
        scene = self.get(scene_id).scene
        data, to_blender = scene.data, scene.to_blender
        rows = []
        for i, name in enumerate(data.names):
            c2w = data.cameras.c2w[i].double().numpy()
            rows.append({"index": i, "name": name,
                         "file": str(data.files[i]) if data.files else None,
                         "split": "test" if i in data.test_ids else "train",
                         "intrinsics": data.cameras.intrinsics[i].tolist(),
                         "distortion": data.cameras.distortion[i].tolist(),
                         "c2w": c2w.tolist(),
                         "c2w_blender": scene_camera_to_blender(c2w, to_blender).tolist()})
        bounds = None
        if scene.field is not None and data.space == "bounded":
            bounds = [scene.field.box_min.tolist(), scene.field.box_max.tolist()]
        elif data.bbox is not None:
            bounds = data.bbox.tolist()
        return {"width": data.width, "height": data.height, "space": data.space,
                "cameras": rows, "bounds": bounds, "to_blender": to_blender.tolist()}

    # ----- interactive calls ------------------------------------------------------
    @contextmanager
    def interactive(self, scene_id: str, segment: str | None = None,
                    segmentation: bool = False, existing: bool = True) -> Iterator[Scene]:
        """The scene, with the device held; refused (409) while a job owns what it needs,
        404 when `segment` does not exist (unless `existing` is False)."""
        item = self.get(scene_id)
        with self.gate.interactive():   # checked with the device held: no job starts meanwhile
            if segmentation or segment is not None:
                self._check_segmentation(item)
            if segment is not None and segment in item.busy_segments:
                raise ApiError(409, f"segment {segment!r} is being changed by job "
                                    f"{item.busy_segments[segment]}; wait for it or cancel it")
            if segment is not None and existing and segment not in item.scene.segmentation.segments:
                raise ApiError(404, f"no segment named {segment!r} (segments: "
                                    f"{', '.join(item.scene.segmentation.segments) or 'none yet'})")
            yield item.scene

    def _check_segmentation(self, item: OpenScene) -> None:
        if item.training_job is not None:
            raise ApiError(409, f"the scene is training (job {item.training_job}); segment "
                                "it when the job is done")
        if item.scene.field is None:
            raise ApiError(409, "the scene has no trained field yet: run a train job first")
        if item.scene.features is None:
            raise ApiError(409, "the scene has no feature field yet: run a distill job first")

    def render(self, scene_id: str, request: schemas.Render) -> tuple[bytes, str, dict]:
        """(body, media type, headers) of a render."""
        item = self.get(scene_id)
        if item.scene.field is None:
            raise ApiError(409, "the scene has no trained field yet: run a train job first")
        with self.interactive(scene_id, segmentation=request.segment is not None) as scene:
            started = time.perf_counter()
            if request.segment is not None and request.segment not in scene.segmentation.segments:
                raise ApiError(404, f"no segment named {request.segment!r}")
            camera = scene.camera(request.camera, request.scale)
            if camera.width * camera.height > schemas.MAX_RENDER_PIXELS:
                raise ApiError(422, f"camera: {camera.width}x{camera.height} is more than "
                                    f"{schemas.MAX_RENDER_PIXELS} pixels")
            rendered = scene.render_camera(camera, request.segment,
                                           preview=request.quality == "preview",
                                           segment_alone=request.mode == "segment")
            image = picture(rendered, request.mode)
            seconds = time.perf_counter() - started
        headers = {"X-Isrf-Seconds": f"{seconds:.4f}", "X-Isrf-Width": str(camera.width),
                   "X-Isrf-Height": str(camera.height)}
        if request.format == "png":
            from PIL import Image
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
            return buffer.getvalue(), "image/png", headers
        arrays = {"picture": image, **{key: rendered[key].cpu().numpy().astype(np.float32)
                                       for key in ("depth", "opacity", "visible") if key in rendered}}
        return _npz(arrays), "application/x-npz", headers

    # ----- segments ---------------------------------------------------------------
    def segments(self, scene_id: str) -> list[dict]:
        with self.interactive(scene_id, segmentation=True) as scene:
            session = scene.segmentation
            return [_segment_row(session, name) for name in session.segments]

    def add_segment(self, scene_id: str, request: schemas.NewSegment) -> dict:
        with self.interactive(scene_id, segmentation=True) as scene:
            scene.segmentation.add_segment(request.name, request.params)
            return _segment_row(scene.segmentation, request.name)

    def change_segment(self, scene_id: str, name: str, request: schemas.ChangeSegment) -> dict:
        with self.interactive(scene_id, name) as scene:
            session = scene.segmentation
            if request.params is not None:
                session.set_params(name, request.params)
            if request.name is not None:
                session.rename_segment(name, request.name)
                name = request.name
            return _segment_row(session, name)

    def delete_segment(self, scene_id: str, name: str) -> None:
        with self.interactive(scene_id, name) as scene:
            scene.segmentation.remove_segment(name)

    def stroke(self, scene_id: str, name: str, stroke: dict) -> dict:
        with self.interactive(scene_id, name, existing=False) as scene:
            result = scene.stroke(name, stroke)
            return dataclasses.asdict(result)

    def history(self, scene_id: str, name: str, action: str) -> dict:
        """undo / redo / reset of a segment; `changed` says whether there was a step."""
        with self.interactive(scene_id, name) as scene:
            session = scene.segmentation
            started = time.perf_counter()
            if action == "reset":
                session.reset(name)
                changed = True
            else:
                changed = getattr(session, action)(name)
            return {**_segment_row(session, name), "changed": changed,
                    "seconds": time.perf_counter() - started}

    def mesh(self, scene_id: str, name: str, options: schemas.MeshOptions) -> tuple[bytes, str]:
        with self.interactive(scene_id, name) as scene:
            mesh = scene.mesh(name, _mesh_config(scene, options))
        return mesh_body(scene, mesh, options)

    def save_segmentation(self, scene_id: str, request: schemas.SessionFile) -> dict:
        path = self._session_path(scene_id, request)
        with self.interactive(scene_id, segmentation=True) as scene:
            return {"path": str(scene.segmentation.save(path))}

    def load_segmentation(self, scene_id: str, request: schemas.SessionFile) -> dict:
        path = self._session_path(scene_id, request)
        if not path.is_file():
            raise ApiError(404, f"path: {path}: no such file")
        with self.interactive(scene_id, segmentation=True) as scene:
            scene.segmentation.load(path)
            return {"path": str(path), "segments": list(scene.segmentation.segments)}

    def _session_path(self, scene_id: str, request: schemas.SessionFile) -> Path:
        self.get(scene_id)
        if request.path is None:
            return self.state_dir / "sessions" / f"{scene_id}.npz"
        path = Path(request.path).expanduser()
        if not path.is_absolute():
            raise ApiError(422, f"path: {request.path!r} must be absolute (the engine's cwd is "
                                "not the client's)")
        return path

    # ----- jobs -------------------------------------------------------------------
    def start_job(self, scene_id: str, request: schemas.StartJob) -> dict:
        """Queue a job; its checks and its claim on the scene (training, a busy segment)
        happen under one lock, so two clients cannot start conflicting jobs at once."""
        with self._lock, self.gate.interactive():
            return self._start_job(scene_id, request)

    def _start_job(self, scene_id: str, request: schemas.StartJob) -> dict:
        item = self.get(scene_id)
        scene = item.scene
        kind, segment = request.kind, request.segment
        if kind in ("distill", "refine", "mesh") and scene.field is None:
            raise ApiError(409, f"a {kind} job needs the colour stage: run a train job first")
        if kind in ("refine", "mesh"):
            self._check_segmentation(item)
            if segment not in scene.segmentation.segments:
                raise ApiError(404, f"no segment named {segment!r}")
            if segment in item.busy_segments:
                raise ApiError(409, f"segment {segment!r} is being changed by job "
                                    f"{item.busy_segments[segment]}")
        if kind in ("train", "distill") and item.training_job is not None:
            raise ApiError(409, f"the scene is already training (job {item.training_job})")
        mesh_config = _mesh_config(scene, request.mesh or schemas.MeshOptions()) if kind == "mesh" else None
        job = Job(kind, scene_id, segment,
                  run=lambda cancel: self._run(scene, job, request, mesh_config, cancel))

        def release() -> None:
            if item.training_job == job.id:
                item.training_job = None
            if item.busy_segments.get(segment) == job.id:
                del item.busy_segments[segment]

        job.release = release
        if kind in ("train", "distill"):
            item.training_job = job.id
        if kind == "refine":
            item.busy_segments[segment] = job.id
        return self.jobs.submit(job).snapshot()

    def _run(self, scene: Scene, job: Job, request: schemas.StartJob,
             mesh_config: MeshConfig | None, cancel: threading.Event) -> dict:
        kind = request.kind
        if kind == "train":
            report = scene.train(resume=request.resume, progress=False, cancel=cancel)
            return {"steps": report.steps, "seconds": report.seconds,
                    "test_psnr": report.final_psnr, "checkpoint": str(report.checkpoint)}
        if kind == "features":
            maps = scene.extract_features(progress=False, cancel=cancel)
            return {"images": int(maps.maps.shape[0]), "shape": list(maps.maps.shape[1:]),
                    "cache": str(maps.path) if maps.path else None}
        if kind == "distill":
            report = scene.distill(resume=request.resume, progress=False, cancel=cancel)
            return {"steps": report.steps, "seconds": report.seconds,
                    "test_cosine": report.test_cosine}
        if kind == "refine":
            result = scene.segmentation.refine(request.segment, request.refine, cancel=cancel)
            return dataclasses.asdict(result)
        with self.gate.job_step():   # mesh: one step
            mesh = scene.mesh(request.segment, mesh_config)
        job.payload = mesh
        return {"vertices": len(mesh.vertices), "faces": len(mesh.faces)}

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}")
        return job

    def job_mesh(self, job_id: str, options: schemas.MeshOptions) -> tuple[bytes, str]:
        job = self.job(job_id)
        if job.kind != "mesh" or job.state != "done":
            raise ApiError(409, f"job {job_id} is a {job.state} {job.kind} job, not a finished mesh job")
        return mesh_body(self.get(job.scene).scene, job.payload, options)

    def shutdown(self) -> None:
        self.jobs.shutdown()


def _segment_row(session, name: str) -> dict:
    segment = session.segment(name)
    return {"name": name, "voxels": int(session.mask(name).sum()),
            "strokes": len(segment.state.strokes), "can_undo": bool(segment.undo_stack),
            "can_redo": bool(segment.redo_stack), "params": dataclasses.asdict(segment.params)}


def _mesh_config(scene: Scene, options: schemas.MeshOptions) -> MeshConfig:
    try:
        # Always the capture's frame here: mesh_body moves it to the asked one.
        return MeshConfig(**{**dataclasses.asdict(scene.config.mesh), **options.overrides,
                             "frame": "capture"})
    except (ValidationError, TypeError) as error:
        message = error.errors()[0] if isinstance(error, ValidationError) else {"loc": (), "msg": str(error)}
        where = ".".join(map(str, message["loc"]))
        raise ApiError(422, f"mesh.overrides{'.' + where if where else ''}: {message['msg']}") from None


def mesh_body(scene: Scene, mesh, options: schemas.MeshOptions) -> tuple[bytes, str]:
    """A mesh (capture frame, from Scene.mesh) in the asked frame and format."""
    to_scene = scene.data.to_scene.double().numpy()
    transform = (scene.to_blender @ to_scene) if options.frame == "blender" else to_scene
    vertices = transform_points(np.asarray(mesh.vertices, np.float64), transform).astype(np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    colours = np.asarray(mesh.visual.vertex_colors, np.uint8)
    if options.format == "npz":
        return _npz({"vertices": vertices, "faces": faces, "colours": colours}), "application/x-npz"
    import trimesh
    moved = trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False)
    return moved.export(file_type=options.format), "application/octet-stream"


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _memory(device: torch.device) -> dict:
    import psutil
    memory = {"process_rss_bytes": psutil.Process().memory_info().rss}
    if device.type == "cuda":
        memory["cuda_allocated_bytes"] = torch.cuda.memory_allocated(device)
        memory["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    return memory
