"""ISRF engine: posed images -> voxel radiance field -> semantic segments -> meshes.

The engine is a library first: `engine.scene.Scene` owns one loaded scene and every
operation is a method on it; the CLI (`engine.cli`) is a thin layer over those calls.
"""

from engine.errors import IsrfError

__version__ = "0.1.0"
"""The engine's version, in this one place (pyproject.toml reads it)."""

__all__ = ["IsrfError", "__version__"]
