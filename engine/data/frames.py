"""The scene frame and Blender's world: one similarity transform between them.

Inside the engine, cameras, strokes and the field live in the *scene frame* (the
normalised coordinates the loaders produce, `PosedImages`). Blender users want the
capture upright (+Z up) at a sensible scale, so every scene gets one suggested
`to_blender` transform [4, 4] (scale * rotation, translation) that cameras, renders,
strokes and meshes all share (the add-on stores it on the Blender scene):

- bounded scenes (transforms.json: Blender, NeRF-synthetic, instant-ngp captures) are
  z-up in their own world by convention, so `to_blender` is the inverse of the loader's
  `to_scene`: objects land where they were in the capture's world, at its scale;
- LLFF and 360 captures come from COLMAP, whose "up" is arbitrary: the cameras' mean up
  direction (OpenCV -Y) becomes +Z, their mean viewing direction's level part +Y (what
  Blender's front view looks along), at the scene frame's scale and origin.
"""

from __future__ import annotations

import numpy as np

from engine.data import cameras
from engine.data.posed_images import PosedImages

OPENGL_TO_OPENCV = cameras.OPENGL_TO_OPENCV.double().numpy()


def blender_transform(data: PosedImages) -> np.ndarray:
    """The suggested scene-frame -> Blender-world similarity [4, 4] (module docstring)."""
    if data.space == "bounded":
        return np.linalg.inv(data.to_scene.double().numpy())
    transform = np.eye(4)
    transform[:3, :3] = upright_rotation(data.cameras.c2w.double().numpy())
    return transform


def upright_rotation(c2w: np.ndarray) -> np.ndarray:
    """[3, 3] rotation (rows: right, forward, up) that turns OpenCV cameras [N, 4, 4]
    upright: their mean up direction (-Y) becomes +Z, the level part of their mean
    viewing direction +Y (any level direction when they look all around, as in a 360)."""
    up = _unit(-c2w[:, :3, 1].mean(0))
    forward = c2w[:, :3, 2].mean(0)
    forward = forward - (forward @ up) * up
    if np.linalg.norm(forward) < 1e-6:          # cameras all look straight up or down
        forward = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    forward = _unit(forward)
    return np.stack([np.cross(forward, up), forward, up])


def focus_point(centres: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """The point [3] nearest to all the cameras' optical axes (least squares): what a
    capture looks at. centres, axes: [N, 3] camera positions and viewing directions."""
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    return np.linalg.lstsq(projectors.sum(0), (projectors @ centres[:, :, None]).sum(0),
                           rcond=None)[0][:, 0]


def split_similarity(transform: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """A similarity [4, 4] -> (scale, rotation [3, 3], translation [3])."""
    scale = float(np.cbrt(np.linalg.det(transform[:3, :3])))
    return scale, transform[:3, :3] / scale, transform[:3, 3]


def camera_to_frame(c2w: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """A camera-to-world [4, 4] moved by a similarity: its rotation stays orthonormal
    (a camera has no scale), its position moves with the transform."""
    scale, rotation, translation = split_similarity(transform)
    moved = np.eye(4)
    moved[:3, :3] = rotation @ c2w[:3, :3]
    moved[:3, 3] = scale * rotation @ c2w[:3, 3] + translation
    return moved


def blender_camera_to_scene(c2w_blender: np.ndarray, to_blender: np.ndarray) -> np.ndarray:
    """Blender's camera-to-world (OpenGL, Blender world) -> OpenCV camera-to-world in the
    scene frame."""
    return camera_to_frame(c2w_blender, np.linalg.inv(to_blender)) @ OPENGL_TO_OPENCV


def scene_camera_to_blender(c2w_scene: np.ndarray, to_blender: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world in the scene frame -> Blender's (OpenGL, Blender world)."""
    return camera_to_frame(c2w_scene @ OPENGL_TO_OPENCV, to_blender)


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Points [P, 3] through a [4, 4] affine transform."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(np.linalg.norm(vector), 1e-12)
