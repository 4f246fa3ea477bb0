"""Build the installable Blender extension: dist/isrf-<version>.zip.

Blender wants blender_manifest.toml next to the add-on's __init__.py, so the manifest
(kept at the repository top) and the contents of isrf_addon/ are staged in one folder,
which Blender's own extension tool (shipped inside the bpy wheel) validates and packs.

Usage: .venv/bin/python scripts/build_addon.py [--out-dir dist]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO / "isrf_addon"
MANIFEST = REPO / "blender_manifest.toml"
# Not part of the package: caches, and the README, which is for developers.
STAGING_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "README.md")


def blender_ext_tool() -> Path:
    """Path of blender_ext.py inside the installed bpy package (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bpy is not installed in this Python: run scripts/bootstrap.sh")
    bpy_dir = Path(spec.submodule_search_locations[0])
    tools = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        sys.exit(f"Blender's extension tool is missing under {bpy_dir}")
    return tools[-1]


def run_tool(*args: str) -> None:
    subprocess.run([sys.executable, str(blender_ext_tool()), *args], check=True)


def package_name() -> str:
    manifest = tomllib.loads(MANIFEST.read_text())
    return f"{manifest['id']}-{manifest['version']}.zip"


def build_addon(out_dir: Path) -> Path:
    """Validate and pack the add-on; returns the path of the zip."""
    package = out_dir.resolve() / package_name()
    package.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "isrf"
        shutil.copytree(ADDON_DIR, staging, ignore=STAGING_IGNORE)
        shutil.copy2(MANIFEST, staging / MANIFEST.name)
        run_tool("build", "--source-dir", str(staging), "--output-filepath", str(package))
    run_tool("validate", str(package))
    return package


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="where the zip goes (default dist/)")
    args = parser.parse_args(argv)
    print(build_addon(args.out_dir))


if __name__ == "__main__":
    main()
