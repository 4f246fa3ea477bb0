"""ISRF engine: posed images -> voxel radiance field -> semantic segments -> meshes.

The engine is a library first: `engine.scene.Scene` owns one loaded scene and every
operation is a method on it; the CLI (`engine.cli`) is a thin layer over those calls.
"""

from engine.errors import IsrfError

__all__ = ["IsrfError"]
