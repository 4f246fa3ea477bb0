"""How close posed cameras are to the true ones, up to the similarity SfM cannot know.

Structure-from-motion recovers cameras up to a rotation, translation and scale of the
whole scene. The estimated camera centres are aligned to the true ones by the best such
similarity (Umeyama's least squares), then each camera is scored by
- its rotation error: the angle between its aligned and its true orientation, degrees;
- its position error: the distance between its aligned and its true centre, as a
  fraction of the true cameras' mean distance from their centroid (the capture's size).
"""

from __future__ import annotations

import numpy as np


def similarity_alignment(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R [3, 3], translation t [3] minimising |s R source + t - target|^2
    over points [N, 3] (Umeyama 1991)."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    u, singular, vt = np.linalg.svd(centred_t.T @ centred_s / len(source))
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ flip @ vt
    scale = float(np.trace(np.diag(singular) @ flip) / centred_s.var(0).sum())
    return scale, rotation, mean_t - scale * rotation @ mean_s


def camera_errors(estimated: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation errors (degrees) and relative position errors, [N] each, of cameras
    [N, 4, 4] (camera-to-world, one convention for both) against the true ones."""
    scale, rotation, translation = similarity_alignment(estimated[:, :3, 3], true[:, :3, 3])
    centres = scale * estimated[:, :3, 3] @ rotation.T + translation
    size = np.linalg.norm(true[:, :3, 3] - true[:, :3, 3].mean(0), axis=1).mean()
    position = np.linalg.norm(centres - true[:, :3, 3], axis=1) / size
    relative = np.einsum("nji,jk,nkl->nil", true[:, :3, :3], rotation, estimated[:, :3, :3])
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cosine)), position
