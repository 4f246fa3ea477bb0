"""Bad scene and checkpoint inputs through the real `isrf` CLI, on real files.

Every expected failure must end with exit code 2 and exactly one stderr line,
`isrf: error: <path>: <problem>`, that names the offending file; never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from synthetic import make_sphere_scene, write_llff
from locations import REPO


# A field small enough that one training step takes a moment on a CPU.
TINY_FIELD = ["--set", "field.num_voxels=4096", "--set", "field.num_voxels_start=4096",
              "--set", "field.upscale_steps=[]", "--set", "train.batch_rays=64",
              "--set", "train.eval_every=0", "--set", "distill.steps=0"]


# ----- fixtures and helpers --------------------------------------------------------------

@pytest.fixture(scope="module")
def sphere_source(tmp_path_factory) -> Path:
    """The analytic sphere scene (transforms.json + images/), written once per module."""
    return make_sphere_scene(tmp_path_factory.mktemp("spheres"), views=6, size=24)


@pytest.fixture
def spheres(sphere_source, tmp_path) -> Path:
    """A private copy of the sphere scene that a test may break."""
    return Path(shutil.copytree(sphere_source, tmp_path / "spheres"))


@pytest.fixture
def llff(sphere_source, tmp_path) -> Path:
    """The sphere scene re-encoded as an LLFF capture (poses_bounds.npy + images/)."""
    return write_llff(sphere_source, tmp_path / "llff")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # What the interpreter does outside pytest (which records warnings instead of printing).
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`isrf <argv>` in-process; warnings reach stderr as they do in a real run."""
    capsys.readouterr()
    saved_format = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            code = main([str(a) for a in argv])
        finally:
            warnings.formatwarning = saved_format
    out, err = capsys.readouterr()
    return code, out, err


def train(capsys, scene: Path, out_dir: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "train", "--set", f"data.path={scene}", "--set", "train.steps=1",
                   "--set", f"train.out_dir={out_dir}", *extra)


def assert_one_error_line(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, f"expected one line on stderr, got:\n{err}"
    assert err.startswith("isrf: error: "), err
    for name in names:
        assert name in err, f"{name!r} not named in: {err}"


def write_garbage(path: Path) -> None:
    path.write_bytes(b"\x89 this is not an image at all \x00\xff" * 8)


def write_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPTIONS = {"garbage": write_garbage, "truncated": write_truncated}


def shrink(path: Path) -> None:
    Image.open(path).resize((20, 16)).save(path)


# ----- scene folder ---------------------------------------------------------------------

def test_missing_scene_folder_is_named(capsys, tmp_path):
    missing = tmp_path / "no_such_scene"
    code, _, err = train(capsys, missing, tmp_path / "run")
    assert_one_error_line(code, err, str(missing))


# ----- LLFF -----------------------------------------------------------------------------

def test_llff_poses_bounds_of_wrong_shape_is_named(capsys, llff, tmp_path):
    poses = np.load(llff / "poses_bounds.npy")
    np.save(llff / "poses_bounds.npy", poses[:, :15])
    code, _, err = train(capsys, llff, tmp_path / "run")
    assert_one_error_line(code, err, str(llff / "poses_bounds.npy"), "[6, 15]")


def test_llff_poses_bounds_that_is_not_npy_is_named(capsys, llff, tmp_path):
    (llff / "poses_bounds.npy").write_bytes(b"these bytes are not a numpy array\n" * 4)
    code, _, err = train(capsys, llff, tmp_path / "run")
    assert_one_error_line(code, err, str(llff / "poses_bounds.npy"))


def test_llff_non_finite_pose_names_the_row(capsys, llff, tmp_path):
    poses = np.load(llff / "poses_bounds.npy")
    poses[3, 7] = np.nan
    np.save(llff / "poses_bounds.npy", poses)
    code, _, err = train(capsys, llff, tmp_path / "run")
    assert_one_error_line(code, err, str(llff / "poses_bounds.npy"), "row 3")


def test_llff_image_count_not_matching_poses_is_named(capsys, llff, tmp_path):
    (llff / "images" / "img_005.png").unlink()
    code, _, err = train(capsys, llff, tmp_path / "run")
    assert_one_error_line(code, err, str(llff / "images"), "5 images", "6 poses")


def test_llff_missing_downscaled_image_folder_is_named(capsys, llff, tmp_path):
    """images_8/ is made from images/ (tests/data/test_downscale.py); with neither, the
    folder that was looked for is named."""
    shutil.rmtree(llff / "images")
    code, _, err = train(capsys, llff, tmp_path / "run", "--set", "data.downscale=8")
    assert_one_error_line(code, err, str(llff / "images_8"))


# ----- transforms.json ------------------------------------------------------------------

def _edit_transforms(scene: Path, edit) -> Path:
    path = scene / "transforms.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))  # json.dumps writes NaN for float("nan")
    return path


def test_transforms_invalid_json_is_named(capsys, spheres, tmp_path):
    (spheres / "transforms.json").write_text('{"frames": [ {"file_path": ')
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(spheres / "transforms.json"), "not valid JSON")


def test_transforms_without_frames_list_is_named(capsys, spheres, tmp_path):
    path = _edit_transforms(spheres, lambda meta: meta.pop("frames"))
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(path), "frames")


def test_transforms_3x4_matrix_names_file_and_frame(capsys, spheres, tmp_path):
    def edit(meta):
        meta["frames"][1]["transform_matrix"] = meta["frames"][1]["transform_matrix"][:3]
    path = _edit_transforms(spheres, edit)
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(path), "frame 1", "4x4")


def test_transforms_non_finite_matrix_names_file_and_frame(capsys, spheres, tmp_path):
    def edit(meta):
        meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    path = _edit_transforms(spheres, edit)
    assert "NaN" in path.read_text()
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(path), "frame 2", "non-finite")


def test_transforms_without_focal_length_is_named(capsys, spheres, tmp_path):
    path = _edit_transforms(spheres, lambda meta: meta.pop("camera_angle_x"))
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(path), "focal")


def test_transforms_with_every_image_missing_is_one_error_line(capsys, spheres, tmp_path):
    shutil.rmtree(spheres / "images")
    code, _, err = train(capsys, spheres, tmp_path / "run")
    assert_one_error_line(code, err, str(spheres), "none of the frames' image files exist")


# ----- bad images, in either layout ----------------------------------------------------

# fixture name -> an image inside that scene
IMAGE_IN = {"llff": "images/img_002.png", "spheres": "images/r_002.png"}


@pytest.mark.parametrize("layout", IMAGE_IN)
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_image_is_named(capsys, request, tmp_path, layout, corruption):
    image = request.getfixturevalue(layout) / IMAGE_IN[layout]
    CORRUPTIONS[corruption](image)
    code, _, err = train(capsys, image.parents[1], tmp_path / "run")
    assert_one_error_line(code, err, str(image))


@pytest.mark.parametrize("layout", IMAGE_IN)
def test_image_of_a_different_size_is_named(capsys, request, tmp_path, layout):
    image = request.getfixturevalue(layout) / IMAGE_IN[layout]
    shrink(image)
    code, _, err = train(capsys, image.parents[1], tmp_path / "run")
    assert_one_error_line(code, err, str(image))


# ----- what a failing run leaves behind -------------------------------------------------

def test_failing_train_keeps_the_existing_checkpoint(capsys, spheres, tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    previous = b"the previous run's checkpoint bytes\x00\x01\x02"
    (out_dir / "checkpoint.pt").write_bytes(previous)
    write_garbage(spheres / "images" / "r_001.png")
    code, _, err = train(capsys, spheres, out_dir)
    assert_one_error_line(code, err, "r_001.png")
    assert (out_dir / "checkpoint.pt").read_bytes() == previous
    assert sorted(p.name for p in out_dir.iterdir()) == ["checkpoint.pt"]  # no temp files left


# ----- render --checkpoint --------------------------------------------------------------

def test_render_missing_checkpoint_is_named(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "checkpoint.pt"
    code, _, err = run_cli(capsys, "render", "--checkpoint", missing, "--out", tmp_path / "out")
    assert_one_error_line(code, err, str(missing))


def test_render_garbage_checkpoint_is_one_line_naming_it(capsys, tmp_path):
    garbage = tmp_path / "checkpoint.pt"
    garbage.write_bytes(b"\x00 definitely not a torch checkpoint \xff\n" * 16)
    code, _, err = run_cli(capsys, "render", "--checkpoint", garbage, "--out", tmp_path / "out")
    assert_one_error_line(code, err, str(garbage))


def test_render_torch_file_that_is_not_an_isrf_checkpoint_is_named(capsys, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    code, _, err = run_cli(capsys, "render", "--checkpoint", other, "--out", tmp_path / "out")
    assert_one_error_line(code, err, str(other), "not an ISRF checkpoint")


# ----- the real command in a subprocess -------------------------------------------------

def _isrf(*argv, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_subprocess_bad_scene_exits_2_with_one_line_and_no_traceback(llff, tmp_path):
    poses = np.load(llff / "poses_bounds.npy")
    poses[4, 0] = np.inf
    np.save(llff / "poses_bounds.npy", poses)
    result = _isrf("train", "--set", f"data.path={llff}", "--set", "train.steps=1",
                   "--set", f"train.out_dir={tmp_path / 'run'}")
    assert_one_error_line(result.returncode, result.stderr, str(llff / "poses_bounds.npy"), "row 4")
    assert result.stdout == ""
    assert not (tmp_path / "run").exists()


def test_subprocess_missing_some_images_trains_with_one_warning(spheres, tmp_path):
    (spheres / "images" / "r_002.png").unlink()
    (spheres / "images" / "r_004.png").unlink()
    out_dir = tmp_path / "run"
    result = _isrf("train", "--set", f"data.path={spheres}", "--set", "train.steps=1",
                   "--set", f"train.out_dir={out_dir}", *TINY_FIELD)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.replace("\r", "\n").splitlines()
    warning_lines = [line for line in lines if line.startswith("isrf: warning:")]
    assert len(warning_lines) == 1, result.stderr
    assert str(spheres) in warning_lines[0]
    assert "skipped 2 frame(s)" in warning_lines[0]
    assert "4 images" in result.stderr  # the summary: the other 4 frames were used
    assert (out_dir / "checkpoint.pt").is_file()
