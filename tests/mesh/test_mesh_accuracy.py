"""engine/mesh/accuracy.py: scores of meshes against known surfaces, and what cameras see."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from engine.data.cameras import Cameras
from engine.mesh import accuracy

TAUS = (0.002, 0.02)


def _camera_looking_along_z(distance: float = 5.0, size: int = 100) -> Cameras:
    """One OpenCV camera at (0, 0, -distance) looking down +Z at the origin."""
    c2w = torch.eye(4)[None].clone()
    c2w[0, 2, 3] = -distance
    return Cameras(c2w, torch.tensor([[100.0, 100.0, size / 2, size / 2]]), torch.zeros(1, 4),
                   size, size)


def test_a_shifted_sphere_scores_its_shift():
    truth = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    shifted = truth.copy()
    shifted.apply_translation([0.01, 0, 0])
    points, _ = accuracy.surface_samples(truth, 100_000)
    scores = accuracy.surface_scores(shifted, points, np.ones(len(points), bool), TAUS)
    # a point of the shifted sphere is |0.01 cos(angle)| from the true one: 0.005 on average,
    # plus up to ~0.002 from the samples' spacing (100k over 3.1 square units)
    assert 0.005 <= scores["accuracy"] <= 0.007
    assert 0.005 <= scores["completeness"] <= 0.007
    assert scores["fscore_0.02"] == 1.0
    assert scores["fscore_0.002"] < 0.35


def test_a_stray_piece_costs_precision_not_recall():
    truth = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    stray = trimesh.creation.box(extents=[0.2, 0.2, 0.2])
    stray.apply_translation([2, 0, 0])
    mesh = trimesh.util.concatenate([truth, stray])
    points, _ = accuracy.surface_samples(truth, 100_000)
    scores = accuracy.surface_scores(mesh, points, np.ones(len(points), bool), TAUS)
    share = stray.area / mesh.area
    assert scores["precision_0.02"] == pytest.approx(1 - share, abs=0.01)
    assert scores["recall_0.02"] == 1.0
    assert scores["accuracy"] > share * 1.4      # the stray piece is 1.4-1.6 from the sphere


def test_only_what_the_truth_shows_a_camera_counts_for_completeness():
    """A completeness over the seen truth only: a mesh without the sphere's far half is
    complete for a camera on the near side."""
    truth = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    cameras = _camera_looking_along_z()
    points, normals = accuracy.surface_samples(truth, 50_000)
    buffers = accuracy.depth_buffers(cameras, [0], points)
    seen = accuracy.seen(cameras, [0], buffers, points, normals)
    assert seen[points[:, 2] < -0.25].mean() > 0.99       # the near half, up to 60 degrees
    assert seen[points[:, 2] < 0].mean() > 0.75           # (grazing points may be missed)
    assert not seen[points[:, 2] > 0.05].any()            # the far half
    near_half = trimesh.Trimesh(truth.vertices, truth.faces[truth.triangles_center[:, 2] < 0])
    scores = accuracy.surface_scores(near_half, points, seen, TAUS)
    assert scores["recall_0.02"] > 0.999
    assert scores["precision_0.02"] > 0.999
    everything = accuracy.surface_scores(near_half, points, np.ones(len(points), bool), TAUS)
    assert everything["recall_0.02"] < 0.6               # the far half would count as missing


def test_a_hidden_surface_is_not_seen():
    """A small box behind a wall: the wall's z-buffer hides it; in front of it, it shows."""
    wall = trimesh.creation.box(extents=[3, 3, 0.1])
    box = trimesh.creation.box(extents=[0.4, 0.4, 0.4])
    cameras = _camera_looking_along_z()
    wall_points, _ = accuracy.surface_samples(wall, 200_000)
    for offset, expected in ((1.0, False), (-1.0, True)):
        placed = box.copy()
        placed.apply_translation([0, 0, offset])
        points, normals = accuracy.surface_samples(placed, 5_000)
        buffers = accuracy.depth_buffers(cameras, [0], np.concatenate([wall_points, points]))
        assert accuracy.seen(cameras, [0], buffers, points, normals).any() == expected


def test_colour_error_compares_seen_vertices_with_the_photograph():
    """A plane facing the camera, coloured grey 100, in front of a photograph of grey 110."""
    plane = trimesh.creation.box(extents=[1, 1, 0.01])
    plane.visual.vertex_colors = np.tile([100, 100, 100, 255], (len(plane.vertices), 1))
    cameras = _camera_looking_along_z()
    points, _ = accuracy.surface_samples(plane, 50_000)
    buffers = accuracy.depth_buffers(cameras, [0], points)
    photograph = np.full((100, 100, 3), 110 / 255)
    vertices = np.asarray(plane.vertices)
    error = accuracy.colour_error(plane, vertices, cameras, [0], buffers, [photograph])
    assert error == pytest.approx(10.0, abs=1e-3)
