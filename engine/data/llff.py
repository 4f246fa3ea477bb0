"""LLFF captures (`poses_bounds.npy` + images), forward-facing or unbounded 360.

poses_bounds.npy holds one row of 17 numbers per image: a 3x5 matrix (rotation columns
in LLFF's [down, right, back] order, translation, and [height, width, focal] of the
full-resolution image), then the near and far scene depths. Images are the sorted files
of `images/` or `images_<N>/` (downscaled by N; made from `images/` when missing).

Normalisation, as in the NeRF/LLFF reference code:
- forward-facing: scale so the nearest depth is 1/0.75, re-centre on the average pose;
  rays are later mapped to NDC with the near plane at depth 1.
- 360 (unbounded): re-centre on the average pose and scale so the farthest camera is at
  distance 1; the field uses a contraction of space beyond the unit cube.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.data.cameras import OPENGL_TO_OPENCV, Cameras
from engine.data.downscale import downscaled_files
from engine.data.images import BACKGROUNDS, list_images, read_images
from engine.data.posed_images import PosedImages, holdout_split
from engine.errors import IsrfError

BOUNDS_MARGIN = 0.75  # the nearest depth maps to 1 / 0.75 so NDC's near plane (1) is in front


def _read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns OpenGL-style c2w [N, 3, 4], hwf [3] (full resolution) and bounds [N, 2]."""
    if not path.is_file():
        raise IsrfError(f"{path}: file not found (an LLFF scene needs poses_bounds.npy)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise IsrfError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] == 0:
        raise IsrfError(f"{path}: expected an array of shape [N, 17], got {list(array.shape)}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array).all(axis=1))[0, 0])
        raise IsrfError(f"{path}: row {bad} has non-finite values (NaN or inf)")
    poses = array[:, :15].reshape(-1, 3, 5)
    bounds = array[:, 15:17]
    if (bounds <= 0).any():
        raise IsrfError(f"{path}: near/far bounds must be positive")
    # LLFF's [down, right, back] rotation columns -> OpenGL's [right, up, back].
    c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    return c2w, poses[0, :, 4], bounds


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """Mean camera [4, 4] (OpenGL): mean centre, mean viewing axis, mean up."""
    centre = c2w[:, :, 3].mean(0)
    back = _normalize(c2w[:, :, 2].sum(0))
    up = c2w[:, :, 1].sum(0)
    right = _normalize(np.cross(up, back))
    up = np.cross(back, right)
    average = np.eye(4)
    average[:3, :4] = np.stack([right, up, back, centre], 1)
    return average


def _homogeneous(c2w: np.ndarray) -> np.ndarray:
    """[N, 3, 4] -> [N, 4, 4]."""
    out = np.tile(np.eye(4), (len(c2w), 1, 1))
    out[:, :3, :4] = c2w
    return out


def _scaling(factor: float) -> np.ndarray:
    return np.diag([factor, factor, factor, 1.0])


def forward_facing_frame(c2w: np.ndarray, near_depth: float) -> np.ndarray:
    """The similarity [4, 4] that puts forward-facing cameras [N, 3|4, 4] (OpenGL) in the
    frame NDC expects: the average camera at the origin looking down -Z, the nearest scene
    depth at 1 / BOUNDS_MARGIN."""
    scale = _scaling(1.0 / (near_depth * BOUNDS_MARGIN))
    return np.linalg.inv(average_pose((scale @ _homogeneous(c2w[:, :3]))[:, :3])) @ scale


def moved_poses(to_scene: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world poses [N, 3|4, 4] moved by the similarity `to_scene` -> [N, 4, 4],
    with unit rotation axes again (a scaled pose has a scaled rotation block)."""
    moved = to_scene @ _homogeneous(c2w[:, :3])
    moved[:, :3, :3] /= np.linalg.norm(moved[:, :3, :3], axis=1, keepdims=True)
    return moved


def load_llff(root: Path, downscale: int, test_every: int, unbounded: bool,
              background: str = "black") -> PosedImages:
    root = Path(root)
    if not root.is_dir():
        raise IsrfError(f"{root}: scene folder not found")
    c2w, hwf, bounds = _read_poses_bounds(root / "poses_bounds.npy")
    folder = root / ("images" if downscale == 1 else f"images_{downscale}")
    if folder.is_dir() or not (root / "images").is_dir():
        files = list_images(folder)
    else:  # no images_N yet: made from images/ (engine/data/downscale.py)
        files = downscaled_files(list_images(root / "images"), downscale)
    if len(files) != len(c2w):
        raise IsrfError(f"{folder}: {len(files)} images but poses_bounds.npy has "
                        f"{len(c2w)} poses; the counts must match")
    images = read_images(files, background)
    height, width = images.shape[1:3]
    focal = float(hwf[2]) * width / float(hwf[1])  # focal of the full-size image, rescaled

    # One similarity transform, original world -> normalised scene, applied to every pose.
    if unbounded:
        to_scene = np.linalg.inv(average_pose(c2w))
        centres = (to_scene @ _homogeneous(c2w))[:, :3, 3]
        to_scene = _scaling(1.0 / np.linalg.norm(centres, axis=1).max()) @ to_scene
    else:
        to_scene = forward_facing_frame(c2w, float(bounds.min()))
    c2w_scene = moved_poses(to_scene, c2w)

    count = len(files)
    cameras = Cameras(
        c2w=torch.from_numpy(c2w_scene).float() @ OPENGL_TO_OPENCV,
        intrinsics=torch.tensor([[focal, focal, width / 2, height / 2]] * count),
        distortion=torch.zeros(count, 4),
        width=width, height=height)
    train_ids, test_ids = holdout_split(count, test_every)
    return PosedImages(
        images=torch.from_numpy(images), cameras=cameras, names=[f.name for f in files],
        files=[f.resolve() for f in files],
        train_ids=train_ids, test_ids=test_ids,
        space="contracted" if unbounded else "ndc",
        background=BACKGROUNDS[background],
        near=0.05 if unbounded else 1.0,
        ndc_intrinsics=None if unbounded else (focal, focal, float(width), float(height)),
        source=root, to_scene=torch.from_numpy(to_scene).float())
