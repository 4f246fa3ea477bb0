"""The engine as a package: a wheel built from the checkout, installed into a fresh virtual
environment outside it, gives an `isrf` that finds its shipped files and runs.

The fresh environment gets its dependencies (torch, ...) from the test's own environment
through a path entry, so nothing is downloaded; what is tested is the wheel itself: its
modules, its entry point and its package data. The checkout is never on its path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from locations import REPO
from synthetic import make_sphere_scene

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_engine_subpackage_is_packaged():
    listed = set(PROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts)
             for init in (REPO / "engine").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"
    for package, folder in PROJECT["tool"]["setuptools"]["package-dir"].items():
        assert package in listed and (REPO / folder).is_dir(), package


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the checkout's wheel installed -> its bin/ folder."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"   # a copy: the build's egg-info never lands in the checkout
    for folder in ["engine", "configs", "benchmarks"]:
        shutil.copytree(REPO / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools.build_meta as b, sys; "
         "print(b.build_wheel(sys.argv[1]))", str(work / "dist")],
        cwd=source, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = work / "dist" / built.stdout.strip().splitlines()[-1]

    env_dir = work / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-index", str(wheel)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    fresh_site = subprocess.run([bin_dir / "python", "-c", "import sysconfig; "
                                 "print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    # A plain path entry: the test environment's .pth files (the checkout's editable
    # install among them) are not run, so `engine` can only come from the wheel.
    Path(fresh_site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return bin_dir


def _isrf(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([bin_dir / "isrf", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_installed_engine_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = subprocess.run([installed / "python", "-c", "import engine; print(engine.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert REPO not in Path(where.strip()).parents and "site-packages" in where, where


def test_help_of_the_command_and_a_subcommand(installed, tmp_path):
    top = _isrf(installed, "--help", cwd=tmp_path)
    assert top.returncode == 0 and "serve" in top.stdout and "demo" in top.stdout, top.stderr
    train = _isrf(installed, "train", "--help", cwd=tmp_path)
    assert train.returncode == 0 and "--set KEY=VALUE" in train.stdout, train.stderr


def test_demo_reads_the_shipped_benchmark(installed, tmp_path):
    """The benchmark comes from the wheel's package data: an unknown --object is refused
    with its object list before anything is made or trained."""
    done = _isrf(installed, "demo", "--root", str(tmp_path), "--object", "teapot", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no object 'teapot'" in done.stderr and "checker_cube" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_train_and_render_run_from_the_wheel(installed, tmp_path):
    scene = make_sphere_scene(tmp_path / "spheres", views=12, size=32)
    run = tmp_path / "run"
    sets = [f"--set={item}" for item in [
        f"data.path={str(scene)!r}", f"train.out_dir={str(run)!r}", "field.num_voxels=32768",
        "field.num_voxels_start=8000", "field.upscale_steps=[10]", "train.batch_rays=256",
        "train.steps=20", "train.eval_every=0", "train.checkpoint_every=0", "distill.steps=0"]]
    trained = _isrf(installed, "train", *sets, "--device", "cpu", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    rendered = _isrf(installed, "render", "--checkpoint", str(run / "checkpoint.pt"),
                     "--out", str(tmp_path / "renders"), "--device", "cpu", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    metrics = json.loads((tmp_path / "renders" / "metrics.json").read_text())
    assert metrics["per_view"] and all(row["psnr"] > 5 for row in metrics["per_view"])
