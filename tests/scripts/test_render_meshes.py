"""scripts/render_meshes.py: a contact sheet of meshes, rendered by real bpy in a subprocess."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from PIL import Image
from locations import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy")

SCRIPT = REPO / "scripts" / "render_meshes.py"


def test_one_row_of_three_views_per_mesh(tmp_path):
    red = trimesh.creation.box(extents=[1, 1, 1])
    red.visual.vertex_colors = np.tile([230, 20, 20, 255], (len(red.vertices), 1))
    blue = trimesh.creation.icosphere(radius=0.5)
    blue.visual.vertex_colors = np.tile([20, 20, 230, 255], (len(blue.vertices), 1))
    red.export(tmp_path / "red.ply"), blue.export(tmp_path / "blue.ply")
    sheet = tmp_path / "sheet.png"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(sheet),
                             str(tmp_path / "red.ply"), str(tmp_path / "blue.ply")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    pixels = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    tile = pixels.shape[1] // 3
    assert pixels.shape == (2 * tile, 3 * tile, 3)
    for row, (strong, weak) in enumerate(((0, 2), (2, 0))):   # red row, then blue row
        for column in range(3):
            cell = pixels[row * tile:(row + 1) * tile, column * tile:(column + 1) * tile]
            coloured = (cell[..., strong] - cell[..., weak]) > 60
            assert 0.05 < coloured.mean() < 0.9, (row, column)   # the mesh, in its colour
