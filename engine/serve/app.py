"""The HTTP routes: each translates a request into one `Workspace` call and its answer
back. Every route is under /v1 and needs the start-up token (`Authorization: Bearer`).

Status codes: 401 no or wrong token; 400 a body that is not JSON; 404 an unknown scene,
job or segment; 409 a stage not trained yet or a job that owns what the call needs (the
message says what to run or wait for); 413 a body over the size limit; 422 a field out
of range (the message names it). Errors are JSON: {"error": {"status", "message"}}.
Arrays come back as .npz bytes (`numpy.load` reads them), pictures as PNG.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

import torch
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import engine
from engine.errors import IsrfError
from engine.segment.strokes import Stroke
from engine.serve import API_VERSION, schemas
from engine.serve.workspace import ApiError, Workspace

log = logging.getLogger("isrf.serve")
MAX_WAIT_SECONDS = 30.0


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class Guard:
    """ASGI middleware: the token on every request (constant-time compare) and the body
    size limit (checked on the bytes received, so a lying Content-Length cannot pass)."""

    def __init__(self, app: ASGIApp, token: str, max_body: int = schemas.MAX_BODY_BYTES):
        self.app, self.token, self.max_body = app, token.encode(), max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"")
        if not hmac.compare_digest(given, b"Bearer " + self.token):
            return await _error(401, "missing or wrong token (Authorization: Bearer <token "
                                     "file's content>)")(scope, receive, send)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            return await _error(400, "Content-Length is not a number")(scope, receive, send)
        if int(length) > self.max_body:
            return await _error(413, f"body over {self.max_body} bytes")(scope, receive, send)
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise ApiError(413, f"body over {self.max_body} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(workspace: Workspace, token: str) -> FastAPI:
    app = FastAPI(title="ISRF engine", version=engine.__version__,
                  openapi_url="/v1/openapi.json", docs_url="/v1/docs", redoc_url=None)
    app.add_middleware(Guard, token=token)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _error(error.status, str(error))

    @app.exception_handler(IsrfError)
    async def isrf_error(request: Request, error: IsrfError):
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {first.get('msg')}")
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return _error(422, f"{where or 'body'}: {first['msg']}")

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception):
        log.exception("internal error in %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {error!r}")

    # ----- engine -------------------------------------------------------------------
    @app.get("/v1/health")
    def health() -> dict:
        return {"isrf": "engine", "api": API_VERSION, "version": engine.__version__,
                "device": str(workspace.device or ("cuda" if torch.cuda.is_available() else "cpu")),
                "cuda": torch.cuda.is_available(), "scenes": len(workspace.scenes)}

    # ----- scenes -------------------------------------------------------------------
    @app.get("/v1/scenes")
    def list_scenes() -> list[dict]:
        return workspace.list_scenes()

    @app.post("/v1/scenes", status_code=201)
    def open_scene(request: schemas.OpenScene) -> dict:
        return workspace.open_scene(request)

    @app.get("/v1/scenes/{scene_id}")
    def scene_status(scene_id: str) -> dict:
        return workspace.scene_status(scene_id)

    @app.delete("/v1/scenes/{scene_id}", status_code=204)
    def close_scene(scene_id: str) -> Response:
        workspace.close_scene(scene_id)
        return Response(status_code=204)

    @app.get("/v1/scenes/{scene_id}/cameras")
    def cameras(scene_id: str) -> dict:
        return workspace.cameras(scene_id)

    @app.post("/v1/scenes/{scene_id}/render",
              responses={200: {"content": {"image/png": {}, "application/x-npz": {}}}})
    def render(scene_id: str, request: schemas.Render) -> Response:
        body, media, headers = workspace.render(scene_id, request)
        return Response(body, media_type=media, headers=headers)

    # ----- segments -----------------------------------------------------------------
    @app.get("/v1/scenes/{scene_id}/segments")
    def segments(scene_id: str) -> list[dict]:
        return workspace.segments(scene_id)

    @app.post("/v1/scenes/{scene_id}/segments", status_code=201)
    def add_segment(scene_id: str, request: schemas.NewSegment) -> dict:
        return workspace.add_segment(scene_id, request)

    @app.patch("/v1/scenes/{scene_id}/segments/{name}")
    def change_segment(scene_id: str, name: str, request: schemas.ChangeSegment) -> dict:
        return workspace.change_segment(scene_id, name, request)

    @app.delete("/v1/scenes/{scene_id}/segments/{name}", status_code=204)
    def delete_segment(scene_id: str, name: str) -> Response:
        workspace.delete_segment(scene_id, name)
        return Response(status_code=204)

    @app.post("/v1/scenes/{scene_id}/segments/{name}/strokes")
    def stroke(scene_id: str, name: str, stroke: Stroke) -> dict:
        return workspace.stroke(scene_id, name, stroke)

    @app.post("/v1/scenes/{scene_id}/segments/{name}/undo")
    def undo(scene_id: str, name: str) -> dict:
        return workspace.history(scene_id, name, "undo")

    @app.post("/v1/scenes/{scene_id}/segments/{name}/redo")
    def redo(scene_id: str, name: str) -> dict:
        return workspace.history(scene_id, name, "redo")

    @app.post("/v1/scenes/{scene_id}/segments/{name}/reset")
    def reset(scene_id: str, name: str) -> dict:
        return workspace.history(scene_id, name, "reset")

    @app.post("/v1/scenes/{scene_id}/segments/{name}/mesh",
              responses={200: {"content": {"application/x-npz": {}, "application/octet-stream": {}}}})
    def mesh(scene_id: str, name: str,
             options: Annotated[schemas.MeshOptions, Body()] = schemas.MeshOptions()) -> Response:
        body, media = workspace.mesh(scene_id, name, options)
        return Response(body, media_type=media)

    @app.post("/v1/scenes/{scene_id}/segmentation/save")
    def save_segmentation(scene_id: str, request: schemas.SessionFile) -> dict:
        return workspace.save_segmentation(scene_id, request)

    @app.post("/v1/scenes/{scene_id}/segmentation/load")
    def load_segmentation(scene_id: str, request: schemas.SessionFile) -> dict:
        return workspace.load_segmentation(scene_id, request)

    # ----- jobs ---------------------------------------------------------------------
    @app.post("/v1/scenes/{scene_id}/jobs", status_code=202)
    def start_job(scene_id: str, request: schemas.StartJob) -> dict:
        return workspace.start_job(scene_id, request)

    @app.get("/v1/jobs")
    def list_jobs() -> list[dict]:
        return [job.snapshot() for job in list(workspace.jobs.jobs.values())]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str, after: Annotated[int, Query(ge=-1)] = -1,
            wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0) -> dict:
        """The job; with `wait`, a long-poll: answers as soon as its version is above
        `after` (or it finishes), else after `wait` seconds."""
        return workspace.jobs.wait(workspace.job(job_id), after, wait)

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict:
        job = workspace.job(job_id)
        workspace.jobs.cancel(job)
        return job.snapshot()

    @app.post("/v1/jobs/{job_id}/mesh",
              responses={200: {"content": {"application/x-npz": {}, "application/octet-stream": {}}}})
    def job_mesh(job_id: str,
                 options: Annotated[schemas.MeshOptions, Body()] = schemas.MeshOptions()) -> Response:
        body, media = workspace.job_mesh(job_id, options)
        return Response(body, media_type=media)

    return app
