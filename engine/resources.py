"""The files the engine ships: configs and the default benchmark spec.

In a checkout they are the top-level `configs/` and `benchmarks/`; an
installed wheel carries the same files as the package `engine.shipped` (pyproject.toml
maps the folders into it), found with importlib.resources. Outputs never go here: the
default scene and runs are made under a root folder (`isrf demo --root`; `default_root`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def shipped(folder: str, name: str) -> Path:
    """A shipped file: `folder` is configs | benchmarks."""
    in_checkout = CHECKOUT / folder / name
    if in_checkout.is_file():
        return in_checkout
    packaged = resources.files(f"engine.shipped.{folder}").joinpath(name)
    return Path(str(packaged))   # a wheel installs as plain files: a real path


def default_config() -> Path:
    return shipped("configs", "default.toml")


def default_benchmark() -> Path:
    return shipped("benchmarks", "default.json")


def default_scene_dir(root: Path | None = None) -> Path:
    """Where the default scene is made: <root>/scenes/default (root: the checkout when
    running from one, else the current directory)."""
    return default_root(root) / "scenes" / "default"


def default_root(root: Path | None = None) -> Path:
    """`root`, else the checkout when the engine runs from one, else the current directory."""
    if root is not None:
        return root
    return CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
