"""The engine's API (`isrf serve`, docs/serve.md) as Python calls: stdlib and numpy only,
because this module runs inside Blender's Python.

    client = EngineClient.from_ready_line(line)        # or EngineClient(host, port, token)
    client.check_version()
    scene = client.open_scene(dataset="/data/fern")
    job = client.start_job(scene["id"], "train")
    client.wait_job(job["id"], on_update=lambda job: print(job["progress"]))

Arrays come back as numpy arrays (the engine sends .npz bytes). Every failure is an
`EngineError` naming the problem: `EngineUnavailable` (nothing answers), `Unauthorized`
(401), `NotFound` (404), `Conflict` (409: a stage to run first or a busy job),
`InvalidRequest` (400 / 413 / 422), or a plain `EngineError` (5xx).

One client may be shared by threads: each thread keeps its own keep-alive connection.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np

API_VERSION = 1
"""The engine API this client speaks (engine/serve/__init__.py's API_VERSION)."""
PREFIX = f"/v{API_VERSION}"
FINISHED = ("done", "failed", "cancelled")
LONG_POLL_SECONDS = 10.0


class EngineError(Exception):
    """A call the engine refused or could not answer: `status` (0: no answer) and the
    engine's one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.status = status
        self.message = message


class EngineUnavailable(EngineError):
    pass


class Unauthorized(EngineError):
    pass


class NotFound(EngineError):
    pass


class Conflict(EngineError):
    pass


class InvalidRequest(EngineError):
    pass


class JobFailed(EngineError):
    """A job that ended failed or cancelled; `job` is its last snapshot."""

    def __init__(self, job: dict):
        super().__init__(0, f"{job['kind']} job {job['id']} {job['state']}: {job['error']}")
        self.job = job


_BY_STATUS = {400: InvalidRequest, 401: Unauthorized, 404: NotFound, 409: Conflict,
              413: InvalidRequest, 422: InvalidRequest}


class EngineClient:
    def __init__(self, host: str, port: int, token: str, timeout: float = 120.0):
        self.host, self.port, self.token, self.timeout = host, int(port), token.strip(), timeout
        self._local = threading.local()

    @classmethod
    def from_ready_line(cls, line: str, **kwargs) -> "EngineClient":
        """A client for the engine that printed this ready line (`isrf serve`'s stdout)."""
        try:
            ready = json.loads(line)
        except json.JSONDecodeError:
            raise EngineError(0, f"not an engine ready line: {line[:200]!r}") from None
        if not isinstance(ready, dict) or ready.get("isrf") != "ready":
            raise EngineError(0, f"not an engine ready line: {line[:200]!r}")
        if ready.get("api") != API_VERSION:
            raise EngineError(0, f"the engine speaks API {ready.get('api')}, this add-on "
                                 f"API {API_VERSION}: update the one that is older")
        token = Path(ready["token_file"]).read_text()
        host = ready.get("host", "127.0.0.1")
        return cls("127.0.0.1" if host in ("0.0.0.0", "::") else host, ready["port"], token, **kwargs)

    # ----- transport --------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _Connection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(self, method: str, path: str, body: dict | None = None,
                query: dict | None = None, timeout: float | None = None) -> tuple[bytes, str, dict]:
        """(body, content type, headers) of one call; raises EngineError subclasses."""
        url = PREFIX + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            connection = self._connection()
            reused = connection.sock is not None
            connection.timeout = timeout or self.timeout
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            try:
                connection.request(method, url, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self.close()
                if reused and attempt == 0:   # a keep-alive connection the server closed
                    continue
                raise EngineUnavailable(0, f"the engine at {self.host}:{self.port} closed the "
                                           f"connection ({error.__class__.__name__})") from None
            except OSError as error:
                self.close()
                raise EngineUnavailable(0, f"no engine answers at {self.host}:{self.port} "
                                           f"({error})") from None
        kind = response.getheader("Content-Type", "")
        if response.status >= 400:
            raise _error(response.status, data, kind)
        return data, kind, dict(response.getheaders())

    def _json(self, method: str, path: str, body: dict | None = None, **kwargs):
        data, _, _ = self.request(method, path, body, **kwargs)
        return json.loads(data) if data else None

    # ----- engine -----------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/health")

    def check_version(self) -> dict:
        """The engine's health; EngineError unless it speaks this client's API."""
        health = self.health()
        if health.get("api") != API_VERSION:
            raise EngineError(0, f"the engine (version {health.get('version')}) speaks API "
                                 f"{health.get('api')}, this add-on API {API_VERSION}: update "
                                 "the one that is older")
        return health

    # ----- scenes -----------------------------------------------------------------
    def open_scene(self, dataset: str | None = None, checkpoint: str | None = None,
                   config: str | None = None, overrides: list[str] | None = None,
                   out_dir: str | None = None) -> dict:
        """Open a dataset folder (with a config file and `section.key=value` overrides)
        or a checkpoint; returns the scene's status (its "id" names it in later calls)."""
        body = {key: str(value) for key, value in (("dataset", dataset), ("checkpoint", checkpoint),
                                                  ("config", config), ("out_dir", out_dir))
                if value is not None}
        if overrides:
            body["overrides"] = list(overrides)
        return self._json("POST", "/scenes", body)

    def scenes(self) -> list[dict]:
        return self._json("GET", "/scenes")

    def scene(self, scene: str) -> dict:
        return self._json("GET", f"/scenes/{_part(scene)}")

    def close_scene(self, scene: str) -> None:
        self._json("DELETE", f"/scenes/{_part(scene)}")

    def cameras(self, scene: str) -> dict:
        """Dataset cameras (scene and Blender frame), image size, bounds, to_blender."""
        return self._json("GET", f"/scenes/{_part(scene)}/cameras")

    def render(self, scene: str, camera: dict, scale: float = 1.0, mode: str = "colour",
               segment: str | None = None, quality: str = "full") -> dict[str, np.ndarray]:
        """Render any camera: {"picture": RGBA uint8 [H, W, 4], "depth", "opacity"
        float32 [H, W], "visible" with a segment}, plus "seconds" (the engine's time).
        quality "preview": the engine's quick approximation for a moving view."""
        data, _, headers = self.request("POST", f"/scenes/{_part(scene)}/render", _render_body(
            camera, scale, mode, segment, "npz", quality))
        arrays = _arrays(data)
        arrays["seconds"] = float(_header(headers, "X-Isrf-Seconds", "nan"))
        return arrays

    def render_png(self, scene: str, camera: dict, scale: float = 1.0, mode: str = "colour",
                   segment: str | None = None, quality: str = "full") -> bytes:
        """The same render as PNG bytes."""
        return self.request("POST", f"/scenes/{_part(scene)}/render", _render_body(
            camera, scale, mode, segment, "png", quality))[0]

    # ----- segments ---------------------------------------------------------------
    def segments(self, scene: str) -> list[dict]:
        return self._json("GET", f"/scenes/{_part(scene)}/segments")

    def add_segment(self, scene: str, name: str, params: dict | None = None) -> dict:
        return self._json("POST", f"/scenes/{_part(scene)}/segments",
                          {"name": name, "params": params or {}})

    def change_segment(self, scene: str, name: str, new_name: str | None = None,
                       params: dict | None = None) -> dict:
        body = {key: value for key, value in (("name", new_name), ("params", params))
                if value is not None}
        return self._json("PATCH", f"/scenes/{_part(scene)}/segments/{_part(name)}", body)

    def delete_segment(self, scene: str, name: str) -> None:
        self._json("DELETE", f"/scenes/{_part(scene)}/segments/{_part(name)}")

    def stroke(self, scene: str, name: str, camera: dict, polylines, radius: float = 3.0,
               label: str = "positive", params: dict | None = None) -> dict:
        """Paint a stroke (polylines in the camera's pixels) on a segment, creating it if
        new; returns the engine's StrokeResult (voxels, seconds, ...)."""
        body = {"camera": camera, "label": label, "radius": radius,
                "polylines": [np.asarray(line, float).tolist() for line in polylines]}
        if params:
            body["params"] = params
        return self._json("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/strokes", body)

    def undo(self, scene: str, name: str) -> dict:
        return self._json("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/undo")

    def redo(self, scene: str, name: str) -> dict:
        return self._json("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/redo")

    def reset(self, scene: str, name: str) -> dict:
        return self._json("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/reset")

    def mesh(self, scene: str, name: str, frame: str = "blender",
             overrides: dict | None = None) -> dict[str, np.ndarray]:
        """A segment's mesh: vertices float32 [V, 3], faces int32 [F, 3], colours uint8
        [V, 4], in Blender's frame (the cameras' to_blender) or the scene's."""
        return _arrays(self.request("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/mesh",
                                    _mesh_body(frame, "npz", overrides))[0])

    def export_mesh(self, scene: str, name: str, path: str | Path, frame: str = "blender",
                    overrides: dict | None = None) -> Path:
        """Write a segment's mesh to `path` (.ply, .obj or .glb, by its suffix)."""
        path = Path(path)
        data = self.request("POST", f"/scenes/{_part(scene)}/segments/{_part(name)}/mesh",
                            _mesh_body(frame, _mesh_format(path), overrides))[0]
        _write_atomic(path, data)
        return path

    def save_segmentation(self, scene: str, path: str | None = None) -> str:
        """Save every segment (strokes and history); returns the file's path."""
        return self._json("POST", f"/scenes/{_part(scene)}/segmentation/save",
                          {"path": str(path)} if path else {})["path"]

    def load_segmentation(self, scene: str, path: str | None = None) -> list[str]:
        """Load a saved segmentation; returns its segments' names."""
        return self._json("POST", f"/scenes/{_part(scene)}/segmentation/load",
                          {"path": str(path)} if path else {})["segments"]

    # ----- jobs -------------------------------------------------------------------
    def start_job(self, scene: str, kind: str, segment: str | None = None,
                  resume: bool = False, refine: dict | None = None,
                  mesh_overrides: dict | None = None) -> dict:
        """Start a train / features / distill / refine / mesh job; returns its snapshot
        at once ("id", "state", "progress", ...)."""
        body: dict = {"kind": kind, "resume": resume}
        if segment is not None:
            body["segment"] = segment
        if refine is not None:
            body["refine"] = refine
        if mesh_overrides is not None:
            body["mesh"] = {"overrides": mesh_overrides}
        return self._json("POST", f"/scenes/{_part(scene)}/jobs", body)

    def jobs(self) -> list[dict]:
        return self._json("GET", "/jobs")

    def job(self, job: str, after: int = -1, wait: float = 0.0) -> dict:
        """A job's snapshot; with `wait` (seconds), a long-poll that answers as soon as
        the job's version is above `after` or it finishes."""
        return self._json("GET", f"/jobs/{_part(job)}",
                          query={"after": after, "wait": wait},
                          timeout=max(self.timeout, wait + 30.0))

    def cancel_job(self, job: str) -> dict:
        return self._json("POST", f"/jobs/{_part(job)}/cancel")

    def wait_job(self, job: str, on_update: Callable[[dict], None] | None = None,
                 timeout: float | None = None) -> dict:
        """Follow a job (long-polls, no busy loop) until it finishes; `on_update` sees
        every new snapshot. Returns the done job's snapshot; raises JobFailed if it
        failed or was cancelled, TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            wait = LONG_POLL_SECONDS if deadline is None else \
                max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
            snapshot = self.job(job, after=version, wait=wait)
            if snapshot["version"] != version:
                version = snapshot["version"]
                if on_update is not None:
                    on_update(snapshot)
            if snapshot["state"] in FINISHED:
                if snapshot["state"] != "done":
                    raise JobFailed(snapshot)
                return snapshot
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job} still {snapshot['state']} after {timeout} s")

    def job_mesh(self, job: str, frame: str = "blender") -> dict[str, np.ndarray]:
        """The mesh a finished mesh job made (arrays as `mesh` returns them)."""
        return _arrays(self.request("POST", f"/jobs/{_part(job)}/mesh",
                                    _mesh_body(frame, "npz", None))[0])


class _Connection(http.client.HTTPConnection):
    """Sends small requests at once (TCP_NODELAY), on every (re)connect."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _part(value: str) -> str:
    """One URL path segment (segment names may hold spaces and such)."""
    return urllib.parse.quote(str(value), safe="")


def _render_body(camera: dict, scale: float, mode: str, segment: str | None, format: str,
                 quality: str) -> dict:
    body = {"camera": camera, "scale": scale, "mode": mode, "format": format, "quality": quality}
    if segment is not None:
        body["segment"] = segment
    return body


def _mesh_body(frame: str, format: str, overrides: dict | None) -> dict:
    return {"frame": frame, "format": format, "overrides": overrides or {}}


def _mesh_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("ply", "obj", "glb"):
        raise ValueError(f"{path}: export to .ply, .obj or .glb")
    return suffix


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _header(headers: dict, name: str, default: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), default)


def _error(status: int, data: bytes, kind: str) -> EngineError:
    message = data.decode("utf-8", "replace")[:500]
    if kind.startswith("application/json"):
        try:
            message = json.loads(data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
    return _BY_STATUS.get(status, EngineError)(status, message)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a crash leaves the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
