"""Mesh files: PLY, OBJ or GLB by the file's suffix, with vertex colours, written atomically."""

from __future__ import annotations

from pathlib import Path

import trimesh

from engine.atomic import atomic_path
from engine.errors import IsrfError

FORMATS = {".ply": "ply", ".obj": "obj", ".glb": "glb"}


def save_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise IsrfError(f"{path}: unknown mesh format (use {', '.join(FORMATS)})")
    with atomic_path(path) as temp:
        mesh.export(temp, file_type=kind)
    return path
