"""`isrf serve` as the add-on drives it: a real engine process on a free loopback port,
reached through the add-on's own client (isrf_addon/client.py).

One engine serves the module: the sphere scene (tests/synthetic.py) is opened from its
dataset folder and trained and distilled by jobs over the API; a second, long training
job on it shows strokes, renders and cancels while training runs. Start-up, shutdown,
parent death and kill -9 each get a fresh engine of their own.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from engine.scene import Scene
from isrf_addon.client import (Conflict, EngineClient, InvalidRequest, JobFailed, NotFound,
                               Unauthorized)
from isrf_addon.engine_process import EngineProcess
from synthetic import TRAIN, make_sphere_scene
from locations import REPO

ENGINE = [sys.executable, "-m", "engine.cli"]
LONG_TRAIN = ["train.steps=100000", "distill.steps=100000"]
"""A training job that runs until it is cancelled."""


def start_engine(tmp: Path, **kwargs) -> EngineProcess:
    return EngineProcess.start(ENGINE, tmp / "state", tmp / "engine.log", **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_sphere_scene(tmp_path_factory.mktemp("serve") / "spheres", views=40, size=48)


@pytest.fixture(scope="module")
def ball(dataset) -> dict:
    """{"stroke": a short stroke inside the largest sphere of view 0, "mask": that
    sphere's exact mask [48, 48] bool, "second": another stroke inside it}."""
    ids = np.asarray(Image.open(dataset / "masks" / "r_000.png"))
    largest = np.bincount(ids[ids > 0]).argmax()
    mask = ids == largest
    rows, cols = np.nonzero(mask)
    y, x = float(np.median(rows)) + 0.5, float(np.median(cols)) + 0.5
    stroke = {"camera": {"view": 0}, "polylines": [[[x - 2, y], [x + 2, y]]], "radius": 2.0}
    second = {**stroke, "polylines": [[[x, y - 2], [x, y + 2]]]}
    return {"stroke": stroke, "mask": mask, "second": second}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = start_engine(tmp_path_factory.mktemp("engine"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(engine) -> EngineClient:
    return engine.client


@pytest.fixture(scope="module")
def trained(client, dataset) -> str:
    """Id of the sphere scene, colour-trained and distilled by jobs over the API."""
    scene = client.open_scene(dataset=str(dataset), overrides=TRAIN)["id"]
    for kind in ("train", "distill"):
        client.wait_job(client.start_job(scene, kind)["id"], timeout=900)
    return scene


@pytest.fixture
def segment(client, trained, ball):
    """A fresh segment named 'ball' with one stroke; removed afterwards."""
    result = client.stroke(trained, "ball", **ball["stroke"])
    yield result
    client.delete_segment(trained, "ball")


def raw_request(client: EngineClient, method: str, path: str, body: bytes = b"",
                headers: dict | None = None) -> tuple[int, dict]:
    """A request as any HTTP client could send it (no token unless given)."""
    connection = http.client.HTTPConnection(client.host, client.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# ----- start-up and the token ------------------------------------------------------
def test_ready_line_names_a_private_token_file(engine, client):
    token_file = Path(engine.ready["token_file"])
    assert engine.ready["port"] == client.port and token_file.name == f"token-{client.port}"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text() == client.token
    health = client.check_version()
    assert (health["api"], health["device"]) == (1, "cpu")


def test_every_route_needs_the_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": client.token}):
        status, body = raw_request(client, "GET", "/v1/health", headers=headers)
        assert status == 401 and "token" in body["error"]["message"]
    with pytest.raises(Unauthorized):
        EngineClient(client.host, client.port, client.token[:-1] + "x").scenes()
    status, _ = raw_request(client, "GET", "/v1/openapi.json",
                            headers={"Authorization": f"Bearer {client.token}"})
    assert status == 200


def test_a_remote_host_is_refused_without_allow_remote(tmp_path):
    result = subprocess.run([*ENGINE, "serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert "--allow-remote" in result.stderr and not list(tmp_path.glob("token-*"))


# ----- scenes and cameras ----------------------------------------------------------
def test_an_untrained_scene_says_what_to_run_first(client, dataset, ball):
    scene = client.open_scene(dataset=str(dataset), overrides=TRAIN)["id"]
    try:
        with pytest.raises(Conflict, match="train job first"):
            client.render(scene, {"view": 0})
        with pytest.raises(Conflict, match="train job first"):
            client.stroke(scene, "ball", **ball["stroke"])
        with pytest.raises(Conflict, match="train job first"):
            client.start_job(scene, "distill")
        status = client.scene(scene)
        assert (status["colour_trained"], status["features_distilled"], status["grid"]) == (False, False, None)
    finally:
        client.close_scene(scene)
    with pytest.raises(NotFound):
        client.scene(scene)


def test_status_lists_the_trained_stages(client, trained):
    status = client.scene(trained)
    assert status["colour_trained"] and status["features_distilled"]
    assert status["colour_steps"] == status["colour_steps_planned"] == 400
    assert len(status["grid"]) == 3 and status["memory"]["process_rss_bytes"] > 0
    assert trained in [row["id"] for row in client.scenes()]


def test_cameras_share_one_blender_transform(client, trained, dataset):
    cameras = client.cameras(trained)
    assert len(cameras["cameras"]) == 40 and (cameras["width"], cameras["height"]) == (48, 48)
    to_blender = np.array(cameras["to_blender"])
    flip = np.diag([1.0, -1.0, -1.0, 1.0])     # OpenCV <-> OpenGL camera axes
    for row in cameras["cameras"][:3]:
        c2w, c2w_blender = np.array(row["c2w"]), np.array(row["c2w_blender"])
        scale = np.cbrt(np.linalg.det(to_blender[:3, :3]))
        assert np.allclose(c2w_blender[:3, 3], (to_blender @ c2w[:, 3])[:3], atol=1e-5)
        assert np.allclose(c2w_blender[:3, :3], to_blender[:3, :3] @ (c2w @ flip)[:3, :3] / scale,
                           atol=1e-5)
        assert Path(row["file"]).is_file()
    # transforms.json worlds are already z-up: Blender gets the capture's own frame back.
    original = json.loads((dataset / "transforms.json").read_text())["frames"][0]
    first = next(row for row in cameras["cameras"]
                 if Path(row["file"]).name == Path(original["file_path"]).name)
    assert np.allclose(first["c2w_blender"], original["transform_matrix"], atol=1e-4)


# ----- renders ---------------------------------------------------------------------
def test_render_any_camera_in_either_frame(client, trained):
    cameras = client.cameras(trained)
    view = client.render(trained, {"view": 0})
    assert view["picture"].shape == (48, 48, 4) and view["picture"].dtype == np.uint8
    assert view["depth"].shape == (48, 48) and view["seconds"] > 0
    camera = cameras["cameras"][0]
    blender = client.render(trained, {"intrinsics": camera["intrinsics"], "c2w": camera["c2w_blender"],
                                      "width": 48, "height": 48, "convention": "opengl",
                                      "frame": "blender"})
    difference = np.abs(blender["picture"].astype(int) - view["picture"].astype(int))
    assert difference.max() <= 2
    preview = client.render(trained, {"view": 0}, scale=0.5)
    assert preview["picture"].shape == (24, 24, 4)
    quick = client.render(trained, {"view": 0}, scale=0.5, quality="preview")
    error = np.abs(quick["picture"][..., :3] / 255 - preview["picture"][..., :3] / 255)
    assert quick["picture"].shape == (24, 24, 4) and 0 < error.mean() < 0.05
    png = client.render_png(trained, {"view": 0})
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_the_next_render_shows_a_new_stroke(client, trained, ball, segment):
    assert segment["mask"] > 0 and segment["seconds"] > 0
    overlay = client.render(trained, {"view": 0}, mode="overlay", segment="ball")
    alone = client.render(trained, {"view": 0}, mode="segment", segment="ball")
    visible, truth = overlay["visible"] > 0.5, ball["mask"]
    assert (visible & truth).sum() / (visible | truth).sum() > 0.6   # IoU with the sphere
    alpha = alone["picture"][..., 3]
    assert alpha[truth].mean() > 150 and alpha[~truth].mean() < 60
    colour = client.render(trained, {"view": 0})["picture"]
    assert (overlay["picture"][truth] != colour[truth]).any()
    assert np.array_equal(overlay["picture"][~(visible | truth)][:, :3] > 0,
                          colour[~(visible | truth)][:, :3] > 0)


# ----- segments --------------------------------------------------------------------
def test_segments_round_trip(client, trained, segment):
    assert [row["name"] for row in client.segments(trained)] == ["ball"]
    row = client.change_segment(trained, "ball", params={"grow_distance": 0.2})
    assert row["params"]["grow_distance"] == 0.2 and row["voxels"] == segment["mask"]
    client.change_segment(trained, "ball", new_name="sphere one")
    try:
        assert client.undo(trained, "sphere one")["voxels"] == 0
        redone = client.redo(trained, "sphere one")
        assert redone["voxels"] == segment["mask"] and redone["changed"]
        assert not client.redo(trained, "sphere one")["changed"]
        assert client.reset(trained, "sphere one")["voxels"] == 0
        client.add_segment(trained, "empty")
        assert [row["name"] for row in client.segments(trained)] == ["sphere one", "empty"]
        client.delete_segment(trained, "empty")
        with pytest.raises(NotFound):
            client.undo(trained, "empty")
    finally:
        client.change_segment(trained, "sphere one", new_name="ball")


def test_segmentation_saves_and_loads(client, trained, segment, tmp_path):
    path = client.save_segmentation(trained, str(tmp_path / "session.npz"))
    client.reset(trained, "ball")
    assert client.load_segmentation(trained, path) == ["ball"]
    assert client.segments(trained)[0]["voxels"] == segment["mask"]
    with pytest.raises(InvalidRequest, match="absolute"):
        client.save_segmentation(trained, "relative.npz")


# ----- meshes ----------------------------------------------------------------------
def test_mesh_in_both_frames_and_every_format(client, trained, segment, tmp_path):
    blender = client.mesh(trained, "ball")
    scene = client.mesh(trained, "ball", frame="scene")
    assert blender["vertices"].dtype == np.float32 and blender["faces"].dtype == np.int32
    assert blender["colours"].shape == (len(blender["vertices"]), 4)
    assert len(blender["faces"]) > 100 and np.array_equal(blender["faces"], scene["faces"])
    to_blender = np.array(client.cameras(trained)["to_blender"])
    moved = scene["vertices"] @ to_blender[:3, :3].T + to_blender[:3, 3]
    assert np.allclose(moved, blender["vertices"], atol=1e-4)
    for suffix in ("ply", "obj", "glb"):
        path = client.export_mesh(trained, "ball", tmp_path / f"ball.{suffix}")
        loaded = trimesh.load(path, force="mesh", process=False)
        assert len(loaded.faces) == len(blender["faces"])


def test_a_mesh_job_makes_the_same_mesh(client, trained, segment):
    job = client.wait_job(client.start_job(trained, "mesh", segment="ball")["id"])
    assert job["result"]["faces"] == len(client.mesh(trained, "ball")["faces"])
    assert np.array_equal(client.job_mesh(job["id"])["faces"], client.mesh(trained, "ball")["faces"])


def test_a_features_job_reports_its_maps(client, trained):
    job = client.wait_job(client.start_job(trained, "features")["id"])
    assert job["result"]["images"] == 40 and job["result"]["shape"][-1] == 16
    assert job["progress"] == 1.0 and client.scene(trained)["features_distilled"]


# ----- bad input -------------------------------------------------------------------
def test_bad_input_is_refused_and_the_server_keeps_serving(client, trained, segment):
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"}
    status, body = raw_request(client, "POST", f"/v1/scenes/{trained}/render", b"{not json", headers)
    assert status == 400 and "JSON" in body["error"]["message"]
    status, body = raw_request(client, "POST", f"/v1/scenes/{trained}/render",
                               b"x" * (17 * 1024 * 1024), headers)
    assert status == 413
    with pytest.raises(InvalidRequest, match="scale"):
        client.render(trained, {"view": 0}, scale=2.0)
    with pytest.raises(InvalidRequest, match="radius"):
        client.stroke(trained, "ball", {"view": 0}, [[[1, 1]]], radius=-1)
    with pytest.raises(InvalidRequest, match="100000"):
        client.stroke(trained, "ball", {"view": 0}, [np.ones((100_001, 2))])
    with pytest.raises(InvalidRequest, match="view 99"):
        client.stroke(trained, "ball", {"view": 99}, [[[1, 1]]])
    with pytest.raises(InvalidRequest, match="mesh.overrides"):
        client.mesh(trained, "ball", overrides={"no_such_setting": 1})
    with pytest.raises(NotFound):
        client.render("nosuchscene", {"view": 0})
    with pytest.raises(NotFound):
        client.mesh(trained, "no such segment")
    with pytest.raises(NotFound):
        client.job("nosuchjob")
    with pytest.raises(NotFound, match="no such folder"):
        client.open_scene(dataset="/no/such/folder")
    assert client.segments(trained)[0]["voxels"] == segment["mask"]   # nothing changed
    assert client.health()["api"] == 1


def test_fuzzed_requests_get_no_server_error(engine, client, tmp_path):
    """schemathesis over the served OpenAPI schema (bounded: CI runs it; the benchmark
    runs >= 1000 cases)."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run",
         f"http://{client.host}:{client.port}/v1/openapi.json",
         "--header", f"Authorization: Bearer {client.token}", "--checks", "not_a_server_error",
         "--max-examples", "8", "--seed", "1", "--workers", "1", "--suppress-health-check", "all",
         "--exclude-path", "/v1/scenes/{scene_id}/jobs"],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    assert client.health()["api"] == 1


# ----- jobs while the engine trains -------------------------------------------------
@pytest.fixture
def long_training(client, dataset):
    """(scene, job) of a training job that runs until cancelled (on its own scene)."""
    scene = client.open_scene(dataset=str(dataset), overrides=[*TRAIN, *LONG_TRAIN])["id"]
    job = client.start_job(scene, "train")
    snapshot = client.job(job["id"])
    while snapshot["progress"] == 0 and snapshot["state"] in ("queued", "running"):
        snapshot = client.job(job["id"], after=snapshot["version"], wait=10)
    assert snapshot["state"] == "running"
    yield scene, snapshot
    client.cancel_job(job["id"])
    client.close_scene(scene)


def test_a_stroke_is_answered_while_training_runs(client, trained, ball, long_training):
    scene, job = long_training
    result = client.stroke(trained, "during training", **ball["stroke"])
    try:
        assert result["mask"] > 0
        during = client.job(job["id"])
        assert during["state"] == "running" and during["progress"] > 0
        assert client.render(trained, {"view": 0}, mode="overlay",
                             segment="during training")["visible"].max() > 0.5
        with pytest.raises(Conflict, match="training"):
            client.stroke(scene, "ball", **ball["stroke"])   # the scene being trained
        with pytest.raises(Conflict, match="already training"):
            client.start_job(scene, "train")
    finally:
        client.delete_segment(trained, "during training")


def test_every_job_kind_cancels(client, trained, ball, segment, long_training, dataset):
    scene, running = long_training
    # Queued behind the running training (one worker): each is cancelled before it starts.
    queued = [client.start_job(scene, "features"), client.start_job(trained, "mesh", segment="ball"),
              client.start_job(trained, "refine", segment="ball")]
    with pytest.raises(Conflict, match="being changed"):
        client.start_job(trained, "mesh", segment="ball")
    with pytest.raises(Conflict, match="being changed"):
        client.stroke(trained, "ball", **ball["stroke"])        # the refine job owns it
    queued.append(client.start_job(trained, "distill", resume=True))
    for job in queued:
        client.cancel_job(job["id"])
    client.cancel_job(running["id"])
    with pytest.raises(JobFailed, match="resume from"):  # training saves its checkpoint
        client.wait_job(running["id"])
    for job in queued:
        with pytest.raises(JobFailed, match="cancelled before it started"):
            client.wait_job(job["id"])
    assert client.stroke(trained, "ball", **ball["stroke"])["mask"] > 0   # released again
    # Cancelled while running: a distillation (after a short colour stage).
    fresh = client.open_scene(dataset=str(dataset),
                              overrides=[*TRAIN, "train.steps=20", "distill.steps=100000"])["id"]
    try:
        client.wait_job(client.start_job(fresh, "train")["id"])
        job = client.start_job(fresh, "distill")
        snapshot = client.job(job["id"])
        while snapshot["stage"] != "distill" or snapshot["progress"] == 0:
            snapshot = client.job(job["id"], after=snapshot["version"], wait=10)
            assert snapshot["state"] in ("queued", "running")
        client.cancel_job(job["id"])
        with pytest.raises(JobFailed, match="distill cancelled"):
            client.wait_job(job["id"])
    finally:
        client.close_scene(fresh)


def test_a_checkpoint_in_use_is_not_opened_twice(client, trained):
    with pytest.raises(Conflict, match=trained):
        client.open_scene(checkpoint=client.scene(trained)["checkpoint"])


def test_sixteen_clients_render_and_poll_while_a_scene_trains(client, trained, dataset):
    scene = client.open_scene(dataset=str(dataset), overrides=TRAIN)["id"]
    job = client.start_job(scene, "train")["id"]
    errors, renders = [], []

    def user(index: int) -> None:
        own = EngineClient(client.host, client.port, client.token)
        try:
            while client.job(job)["state"] in ("queued", "running"):
                picture = own.render(trained, {"view": index}, scale=0.5)["picture"]
                renders.append(picture.shape)
                own.job(job)
                own.scene(scene)
        except Exception as error:   # any failure is reported by the assertion below
            errors.append(repr(error))
        finally:
            own.close()

    users = [threading.Thread(target=user, args=(i,)) for i in range(16)]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join()
    try:
        assert errors == []
        assert client.job(job)["state"] == "done" and len(renders) >= 16
        assert set(renders) == {(24, 24, 4)}
        status = client.scene(scene)
        assert status["colour_trained"] and status["colour_steps"] == 400 and status["jobs"] == []
    finally:
        client.close_scene(scene)


# ----- lifecycle --------------------------------------------------------------------
def test_sigterm_checkpoints_the_running_job_and_removes_the_token(dataset, tmp_path):
    engine = start_engine(tmp_path)
    client = engine.client
    out_dir = tmp_path / "run"
    scene = client.open_scene(dataset=str(dataset), overrides=[*TRAIN, *LONG_TRAIN],
                              out_dir=str(out_dir))["id"]
    job = client.start_job(scene, "train")
    snapshot = client.job(job["id"])
    while snapshot["progress"] == 0:
        snapshot = client.job(job["id"], after=snapshot["version"], wait=10)
    engine.stop()
    assert (out_dir / "checkpoint.pt").is_file()
    assert Scene.from_checkpoint(out_dir / "checkpoint.pt", "cpu").step > 0
    assert not list((tmp_path / "state").glob("token-*"))


def test_the_engine_exits_when_its_parent_dies(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    engine = start_engine(tmp_path, parent_pid=parent.pid)
    assert engine.client.health()["api"] == 1
    parent.kill()
    parent.wait()
    assert engine.process.wait(timeout=120) == 0


def test_kill_9_during_saves_leaves_a_whole_file(trained, client, ball, tmp_path):
    checkpoint = client.scene(trained)["checkpoint"]
    engine = start_engine(tmp_path)
    own = engine.client
    scene = own.open_scene(checkpoint=checkpoint)["id"]
    own.stroke(scene, "ball", **ball["stroke"])
    path = tmp_path / "session.npz"
    own.save_segmentation(scene, str(path))
    own.stroke(scene, "ball", **ball["second"])
    saved = threading.Event()

    def keep_saving() -> None:
        try:
            while True:
                own.save_segmentation(scene, str(path))
                saved.set()
        except Exception:   # the engine was killed mid-request
            saved.set()

    saver = threading.Thread(target=keep_saving)
    saver.start()
    saved.wait()
    os.kill(engine.process.pid, signal.SIGKILL)
    saver.join()
    engine.process.wait()
    session = Scene.from_checkpoint(Path(checkpoint), "cpu").segmentation
    session.load(path)
    assert len(session.segment("ball").state.strokes) == 2
