"""How close an extracted mesh is to a known true surface, and how true its colours are.

Used by scripts/bench_mesh.py on the default scene, whose objects' true surfaces its
generator writes (scenes/default/meshes/). Distances are between dense point samples of
the two surfaces (as Tanks and Temples and DTU score reconstructions):

- accuracy: mean distance from the mesh to the true surface (every part of it counts:
  pieces of a neighbour, or material below the table top, are errors);
- completeness: mean distance from the true surface to the mesh, over the true surface
  that some camera sees only (a field knows nothing of an object's underside or of the
  table top under it);
- precision / recall / F-score at a distance `tau`: the share of the mesh within tau of
  the truth, of the seen truth within tau of the mesh, and their harmonic mean;
- colour error: at the vertices a camera sees, the mean absolute difference between the
  vertex colour and the photograph's pixel there (0-255), over held-out views;
- roughness: the mean angle between neighbouring faces' normals (ripples, not shape).

What a camera sees is decided with a z-buffer of the true scene's point samples per view.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from engine.data.cameras import Cameras

SEEN_TOLERANCE = 0.02   # world units a seen point may lie behind the nearest surface at its
SEEN_PIXELS = 2.0       # pixel, plus the width of this many pixels at its depth (slopes)


def surface_samples(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points spread uniformly by area over the mesh -> points [P, 3], normals [P, 3]."""
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, np.float64), np.asarray(mesh.face_normals[faces], np.float64)


def depth_buffers(cameras: Cameras, views: list[int], occluders: np.ndarray) -> torch.Tensor:
    """Per view, the nearest depth of the `occluders` points [Q, 3] (the cameras' frame)
    at each pixel -> [V, H * W] (inf where none lands)."""
    points = torch.from_numpy(occluders).float()
    buffers = torch.full((len(views), cameras.height * cameras.width), float("inf"))
    for slot, view in enumerate(views):
        pixel, depth, inside = _project(cameras, view, points)
        buffers[slot].scatter_reduce_(0, pixel[inside], depth[inside], "amin")
    return buffers


def seen(cameras: Cameras, views: list[int], buffers: torch.Tensor, points: np.ndarray,
         normals: np.ndarray) -> np.ndarray:
    """[P] bool: which points [P, 3] (normals [P, 3]) face some view and are not behind
    the nearest surface there (`depth_buffers`) by more than SEEN_TOLERANCE plus
    SEEN_PIXELS pixels' width at their depth (a sloped surface's depth varies that much
    across a pixel)."""
    return seen_in_each(cameras, views, buffers, points, normals).any(0)


def seen_in_each(cameras: Cameras, views: list[int], buffers: torch.Tensor, points: np.ndarray,
                 normals: np.ndarray) -> np.ndarray:
    """[V, P] bool: `seen` per view."""
    return np.stack([seen for _, seen in _seen_per_view(cameras, views, buffers, points, normals)])


def _seen_per_view(cameras: Cameras, views: list[int], buffers: torch.Tensor,
                   points: np.ndarray, normals: np.ndarray):
    """For each of `views`: (the points' pixel indices [P] long, which of them the view
    sees [P] bool), as `seen` decides it."""
    where = torch.from_numpy(np.array(points, np.float32))
    facing_dirs = torch.from_numpy(np.array(normals, np.float32))
    for slot, view in enumerate(views):
        pixel, depth, inside = _project(cameras, view, where)
        centre = cameras.c2w[view, :3, 3].cpu()
        facing = ((centre - where) * facing_dirs).sum(-1) > 0
        nearest = buffers[slot][pixel.clamp(0, buffers.shape[1] - 1)]
        tolerance = SEEN_TOLERANCE + SEEN_PIXELS * depth / cameras.intrinsics[view, 0].cpu()
        yield pixel, (inside & facing & (depth <= nearest + tolerance)).numpy()


def _project(cameras: Cameras, view: int, points: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-major pixel index [P] long, depth [P] and in-image-and-in-front [P] bool."""
    cameras = cameras.to("cpu")
    uv, depth = cameras.project(view, points)
    col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (depth > 0) & (col >= 0) & (col < cameras.width) & (row >= 0) & (row < cameras.height)
    return row * cameras.width + col, depth, inside


def surface_scores(mesh: trimesh.Trimesh, truth_points: np.ndarray, truth_seen: np.ndarray,
                   taus: tuple[float, ...], samples: int = 100_000) -> dict[str, float]:
    """Distances between `mesh` and the true surface sampled as `truth_points` [T, 3]
    (`truth_seen` [T] bool: those some camera sees) -> accuracy, completeness, chamfer
    (their mean), and precision / recall / fscore at each tau (keys suffixed _<tau>)."""
    predicted, _ = surface_samples(mesh, samples)
    to_truth, _ = cKDTree(truth_points).query(predicted)
    to_mesh, _ = cKDTree(predicted).query(truth_points[truth_seen])
    scores = {"accuracy": float(to_truth.mean()), "completeness": float(to_mesh.mean())}
    scores["chamfer"] = (scores["accuracy"] + scores["completeness"]) / 2
    for tau in taus:
        precision, recall = float((to_truth < tau).mean()), float((to_mesh < tau).mean())
        total = precision + recall
        scores[f"precision_{tau:g}"] = precision
        scores[f"recall_{tau:g}"] = recall
        scores[f"fscore_{tau:g}"] = 2 * precision * recall / total if total else 0.0
    return scores


def mesh_roughness(mesh: trimesh.Trimesh) -> float:
    """Mean angle in degrees between the normals of neighbouring faces (0 for a plane;
    1.2 for an icosphere of 20k faces; voxel-scale ripples raise it)."""
    normals = mesh.face_normals[mesh.face_adjacency]                    # [A, 2, 3]
    cosines = np.clip((normals[:, 0] * normals[:, 1]).sum(-1), -1, 1)
    return float(np.degrees(np.arccos(cosines)).mean()) if len(cosines) else 0.0


def colour_error(mesh: trimesh.Trimesh, vertices_in_cameras: np.ndarray, cameras: Cameras,
                 views: list[int], buffers: torch.Tensor, photographs: list[np.ndarray]) -> float:
    """Mean |vertex colour - photograph| (0-255, over RGB) at the vertices each view sees.
    vertices_in_cameras [V, 3]: the mesh's vertices in the cameras' frame; photographs:
    per view [H, W, 3] floats in [0, 1]; buffers: `depth_buffers` of the true scene."""
    normals = _normals_in(mesh, vertices_in_cameras)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(np.float64)
    errors = []
    per_view = _seen_per_view(cameras, views, buffers, vertices_in_cameras, normals)
    for (pixel, chosen), photograph in zip(per_view, photographs):
        photo = photograph.reshape(-1, 3) * 255
        errors.append(np.abs(colours[chosen] - photo[pixel[chosen].numpy()]).mean(1))
    errors = np.concatenate(errors)
    return float(errors.mean()) if len(errors) else float("nan")


def _normals_in(mesh: trimesh.Trimesh, vertices: np.ndarray) -> np.ndarray:
    """The mesh's vertex normals with its vertices moved to `vertices` (another frame)."""
    return np.asarray(trimesh.Trimesh(vertices, mesh.faces, process=False).vertex_normals)
