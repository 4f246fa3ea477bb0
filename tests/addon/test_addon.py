"""The Blender add-on: its package builds and validates, and it registers cleanly in bpy.

bpy runs in subprocesses with a throwaway BLENDER_USER_RESOURCES, so the test process
stays free of Blender and the user's Blender configuration is never touched.
"""

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from locations import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="needs bpy: pip install -e '.[dev]'"
)

PANEL = "ISRF_PT_main"


def run_python(args: list[str], blender_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(blender_home)}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("dist")
    run_python(["scripts/build_addon.py", "--out-dir", str(out_dir)], out_dir / "blender")
    return out_dir / "isrf-0.1.0.zip"


def test_package_holds_manifest_next_to_init(package):
    # build_addon.py fails unless Blender's tool validates the manifest and the zip.
    with zipfile.ZipFile(package) as archive:
        modules = [path.name for path in (REPO / "isrf_addon").glob("*.py")]
        assert sorted(archive.namelist()) == sorted(["blender_manifest.toml", *modules])


def test_register_and_unregister(tmp_path):
    script = f"""
import sys
import bpy
sys.path.insert(0, {str(REPO)!r})
import isrf_addon

assert not hasattr(bpy.types, {PANEL!r})
isrf_addon.register()
panel = getattr(bpy.types, {PANEL!r})
assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "ISRF")
isrf_addon.unregister()
assert not hasattr(bpy.types, {PANEL!r})
"""
    run_python(["-c", script], tmp_path)


def test_installed_package_enables_and_disables(package, tmp_path):
    script = f"""
import bpy

bpy.ops.extensions.package_install_files(filepath={str(package)!r}, repo="user_default", enable_on_install=True)
assert hasattr(bpy.types, {PANEL!r})
bpy.ops.preferences.addon_disable(module="bl_ext.user_default.isrf")
assert not hasattr(bpy.types, {PANEL!r})
"""
    run_python(["-c", script], tmp_path)
