"""scripts/make_default_scene.py, run small (3 views of 48 px) in subprocesses."""

import filecmp
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from locations import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="needs bpy: pip install -e '.[dev]'"
)

SCRIPT = REPO / "scripts" / "make_default_scene.py"
VIEWS, SIZE = 3, 48
SMALL = ["--views", str(VIEWS), "--size", str(SIZE), "--samples", "2"]


def run_generator(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp / "blender")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True)


def generate(out: Path) -> Path:
    result = run_generator(["--out", str(out), *SMALL], out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two independent runs with the same arguments."""
    return generate(tmp_path_factory.mktemp("a") / "scene"), generate(tmp_path_factory.mktemp("b") / "scene")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def frame_files(scene: Path, key: str) -> list[Path]:
    return [scene / frame[key] for frame in load_json(scene / "transforms.json")["frames"]]


def test_transforms_json(runs):
    transforms = load_json(runs[0] / "transforms.json")
    assert transforms["w"] == transforms["h"] == SIZE
    assert transforms["cx"] == transforms["cy"] == SIZE / 2
    assert transforms["fl_x"] == transforms["fl_y"] > 0
    assert 0 < transforms["camera_angle_x"] < np.pi
    lo, hi = np.array(transforms["aabb"])
    assert (lo < hi).all()
    assert len(transforms["frames"]) == VIEWS
    for frame in transforms["frames"]:
        c2w = np.array(frame["transform_matrix"])
        assert c2w.shape == (4, 4) and np.isfinite(c2w).all()
        np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-5)
        np.testing.assert_array_equal(c2w[3], [0, 0, 0, 1])
        assert (c2w[:3, 3] < lo).any() or (c2w[:3, 3] > hi).any(), "camera inside the scene box"


def test_images_are_rgba(runs):
    for path in frame_files(runs[0], "file_path"):
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("RGBA", (SIZE, SIZE))


def test_masks_hold_known_ids(runs):
    objects = load_json(runs[0] / "objects.json")
    valid = {objects["background_id"]} | {obj["mask_id"] for obj in objects["objects"]}
    seen = set()
    for path in frame_files(runs[0], "mask_path"):
        with Image.open(path) as image:
            assert (image.mode, image.size) == ("L", (SIZE, SIZE))
            ids = set(np.unique(np.asarray(image)).tolist())
        assert ids <= valid
        seen |= ids
    assert objects["background_id"] in seen
    assert len({i for i in seen if i >= 2}) >= 4, f"objects seen: {sorted(seen)}"


def test_rerun_gives_identical_data(runs):
    first, second = runs
    for name in ("transforms.json", "objects.json"):
        assert filecmp.cmp(first / name, second / name, shallow=False), name
    for a, b in zip(frame_files(first, "mask_path"), frame_files(second, "mask_path")):
        assert filecmp.cmp(a, b, shallow=False), a.name


def test_rerun_gives_images_equal_to_one_level(runs):
    # Cycles' path tracing repeats exactly, OpenImageDenoise does not quite: between
    # processes a handful of pixels differ by one level.
    for a, b in zip(frame_files(runs[0], "file_path"), frame_files(runs[1], "file_path")):
        pixels_a = np.asarray(Image.open(a), dtype=np.int16)
        pixels_b = np.asarray(Image.open(b), dtype=np.int16)
        difference = np.abs(pixels_a - pixels_b).max(axis=-1)
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, a.name


def test_true_surfaces_are_written_in_world_coordinates(runs, tmp_path):
    objects = [item["name"] for item in load_json(runs[0] / "objects.json")["objects"]]
    assert sorted(p.stem for p in (runs[0] / "meshes").glob("*.ply")) == sorted(objects)
    table = trimesh.load(runs[0] / "meshes" / "table.ply")
    np.testing.assert_allclose(table.bounds, [[-1.2, -0.9, -0.08], [1.2, 0.9, 0]], atol=1e-6)
    cube = trimesh.load(runs[0] / "meshes" / "checker_cube.ply")
    assert cube.is_watertight and cube.volume == pytest.approx(0.42**3, rel=1e-5)
    assert cube.bounds[0, 2] == pytest.approx(0, abs=1e-6)       # standing on the table
    lo, hi = np.array(load_json(runs[0] / "transforms.json")["aabb"])
    for name in objects:
        bounds = trimesh.load(runs[0] / "meshes" / f"{name}.ply").bounds
        assert (bounds[0] >= lo).all() and (bounds[1] <= hi).all()
    # --meshes-only writes the same surfaces and nothing else (Blender may split a
    # sphere's non-planar quads along the other diagonal: same vertices, same area)
    result = run_generator(["--out", str(tmp_path / "only"), "--meshes-only"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (tmp_path / "only").iterdir()] == ["meshes"]
    for name in objects:
        again = trimesh.load(tmp_path / "only" / "meshes" / f"{name}.ply", process=False)
        first = trimesh.load(runs[0] / "meshes" / f"{name}.ply", process=False)
        np.testing.assert_array_equal(again.vertices, first.vertices)
        assert again.area == pytest.approx(first.area, rel=1e-4)


@pytest.mark.parametrize("option", ["--views=0", "--size=8", "--samples=0", "--views=two"])
def test_rejects_bad_arguments(tmp_path, option):
    result = run_generator(["--out", str(tmp_path / "scene"), option], tmp_path)
    assert result.returncode == 2
    assert option.split("=")[0] in result.stderr
    assert not (tmp_path / "scene").exists()


def test_engine_loads_the_generated_scene(runs):
    from engine.config import DataConfig
    from engine.data import load_scene

    scene = load_scene(DataConfig(path=str(runs[0])))
    transforms = load_json(runs[0] / "transforms.json")
    assert scene.images.shape == (VIEWS, SIZE, SIZE, 3)
    assert np.allclose(scene.bbox.numpy(), transforms["aabb"])
    # every camera looks towards the table: the box centre is in front of it, inside the image
    centre = scene.bbox.mean(0, keepdim=True)
    for view in range(VIEWS):
        pixel, depth = scene.cameras.project(view, centre)
        assert depth[0] > 0
        assert ((pixel >= 0) & (pixel < SIZE)).all()


def test_room_scene_is_opaque_with_its_own_objects(tmp_path):
    result = run_generator(["--scene", "room", "--out", str(tmp_path / "room"), "--views", "2",
                            "--size", "32", "--samples", "1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    room = tmp_path / "room"
    names = [item["name"] for item in load_json(room / "objects.json")["objects"]]
    assert names[0] == "floor" and {"bottle_on_table", "bottle_on_floor", "pen", "ring"} <= set(names)
    for path in frame_files(room, "file_path"):
        assert (np.asarray(Image.open(path))[..., 3] == 255).all(), "the room shows: no alpha"
    ids = np.stack([np.asarray(Image.open(p)) for p in frame_files(room, "mask_path")])
    assert 0 in ids and 1 in ids     # the room behind (background id) and the floor
    # the look-alikes are one mesh: equal shapes, different places
    a, b = (trimesh.load(room / "meshes" / f"{n}.ply") for n in ("bottle_on_table", "bottle_on_floor"))
    np.testing.assert_allclose(a.extents, b.extents, atol=1e-6)
    assert np.linalg.norm(a.centroid[:2] - b.centroid[:2]) > 1.0
    assert a.bounds[0, 2] > b.bounds[0, 2] + 0.3     # one stands on the coffee table
