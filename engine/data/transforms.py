"""NeRF / instant-ngp `transforms.json` scenes (bounded, or NDC for forward-facing captures).

Accepted layouts: one `transforms.json` (every `test_every`-th frame is held out), or
NeRF-synthetic's `transforms_train.json` + `transforms_test.json` (the given split; a
`transforms_val.json` is ignored), or a path to one .json file.

Per file (global) or per frame: `camera_angle_x` [`camera_angle_y`] or `fl_x` [`fl_y`],
`cx`, `cy`, `w`, `h` (of the full-size photo), distortion `k1 k2 p1 p2`. Poses are `transform_matrix`
camera-to-world in the OpenGL/Blender camera convention. Frames whose image file is
missing are skipped, with one warning that counts them.

Scene box, first that applies: `data.bbox` in the config; an `aabb` key
([[min], [max]], world units; our own scenes write it); instant-ngp's `aabb_scale`
(its unit cube is world * scale + offset, default scale 0.33 and offset 0.5, and the box
is aabb_scale times that cube around its centre); else a box around the point the cameras
look at, as large as the mean camera distance to it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.data.cameras import OPENGL_TO_OPENCV, Cameras
from engine.data.downscale import downscaled_files
from engine.data.frames import focus_point
from engine.data.images import BACKGROUNDS, IMAGE_SUFFIXES, read_images, upright_size
from engine.data.llff import forward_facing_frame, moved_poses
from engine.data.posed_images import PosedImages, holdout_split
from engine.errors import IsrfError

NGP_DEFAULT_SCALE = 0.33
NGP_DEFAULT_OFFSET = (0.5, 0.5, 0.5)
_INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h",
                   "k1", "k2", "p1", "p2")


def find_transforms(path: Path) -> list[tuple[Path, str]]:
    """The json files of a scene and the split each one supplies ('all', 'train', 'test')."""
    if path.is_file():
        return [(path, "all")]
    if not path.is_dir():
        raise IsrfError(f"{path}: scene folder not found")
    if (path / "transforms.json").is_file():
        return [(path / "transforms.json", "all")]
    train, test = path / "transforms_train.json", path / "transforms_test.json"
    if train.is_file():
        return [(train, "train")] + ([(test, "test")] if test.is_file() else [])
    raise IsrfError(f"{path}: no transforms.json or transforms_train.json in the folder")


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IsrfError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict) or not isinstance(content.get("frames"), list):
        raise IsrfError(f"{path}: expected an object with a 'frames' list")
    return content


def _number(value, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise IsrfError(f"{path}: {where} must be a finite number, got {value!r}")
    return float(value)


def _image_path(folder: Path, file_path) -> Path | None:
    """Resolve a frame's file_path; NeRF-synthetic paths have no suffix. None if missing."""
    candidate = folder / str(file_path)
    if candidate.is_file():
        return candidate
    if not candidate.suffix:
        for suffix in IMAGE_SUFFIXES:
            if candidate.with_suffix(suffix).is_file():
                return candidate.with_suffix(suffix)
    return None


def _frame_camera(frame: dict, meta: dict, size: tuple[int, int], path: Path, index: int):
    """Intrinsics [4] and distortion [4] of one frame; per-frame keys override global ones."""
    values = {k: frame[k] if k in frame else meta[k] for k in _INTRINSIC_KEYS if k in frame or k in meta}
    values = {k: _number(v, path, f"frame {index}: {k}") for k, v in values.items()}
    width, height = size
    if values.get("w", width) != width or values.get("h", height) != height:
        raise IsrfError(f"{path}: frame {index}: w/h say {values.get('w', width):g}x{values.get('h', height):g} "
                        f"but the image is {width}x{height}")
    if "fl_x" in values:
        fx = values["fl_x"]
    elif "camera_angle_x" in values:
        fx = 0.5 * width / math.tan(0.5 * values["camera_angle_x"])
    else:
        raise IsrfError(f"{path}: frame {index}: no focal length (fl_x or camera_angle_x)")
    if "fl_y" in values:
        fy = values["fl_y"]
    elif "camera_angle_y" in values:
        fy = 0.5 * height / math.tan(0.5 * values["camera_angle_y"])
    else:
        fy = fx
    if fx <= 0 or fy <= 0:
        raise IsrfError(f"{path}: frame {index}: focal length must be positive")
    intrinsics = [fx, fy, values.get("cx", width / 2), values.get("cy", height / 2)]
    distortion = [values.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")]
    return intrinsics, distortion


def _scaled(camera, full_size: tuple[int, int], size: tuple[int, int]):
    """A frame's (intrinsics, distortion) for its photo resized from full_size to size.
    Pixel coordinates scale with the image (pixel centres at +0.5 keep their relative
    place); distortion acts on normalised coordinates and does not change."""
    (fx, fy, cx, cy), distortion = camera
    sx, sy = size[0] / full_size[0], size[1] / full_size[1]
    return [fx * sx, fy * sy, cx * sx, cy * sy], distortion


def _frame_pose(frame: dict, path: Path, index: int) -> np.ndarray:
    matrix = np.asarray(frame.get("transform_matrix", None), dtype=object)
    if matrix.shape != (4, 4):
        raise IsrfError(f"{path}: frame {index}: transform_matrix must be 4x4, "
                        f"got shape {list(matrix.shape)}")
    try:
        matrix = matrix.astype(np.float64)
    except (TypeError, ValueError):
        raise IsrfError(f"{path}: frame {index}: transform_matrix must hold numbers") from None
    if not np.isfinite(matrix).all():
        raise IsrfError(f"{path}: frame {index}: transform_matrix has non-finite values")
    return matrix


def _scene_box(meta: dict, c2w_gl: np.ndarray, path: Path) -> np.ndarray:
    if "aabb" in meta:
        try:
            box = np.asarray(meta["aabb"], dtype=np.float64)
        except (TypeError, ValueError):
            box = np.zeros(0)
        if box.shape != (2, 3) or not np.isfinite(box).all() or (box[1] <= box[0]).any():
            raise IsrfError(f"{path}: aabb must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max")
        return box
    if "aabb_scale" in meta:
        aabb_scale = _number(meta["aabb_scale"], path, "aabb_scale")
        scale = _number(meta.get("scale", NGP_DEFAULT_SCALE), path, "scale")
        offset = np.asarray(meta.get("offset", NGP_DEFAULT_OFFSET), dtype=np.float64)
        if aabb_scale <= 0 or scale <= 0 or offset.shape != (3,):
            raise IsrfError(f"{path}: aabb_scale and scale must be positive, offset 3 numbers")
        ngp_box = np.stack([np.full(3, 0.5 - aabb_scale / 2), np.full(3, 0.5 + aabb_scale / 2)])
        return (ngp_box - offset) / scale
    return _box_from_cameras(c2w_gl)


def _box_from_cameras(c2w_gl: np.ndarray) -> np.ndarray:
    """A cube around the point the cameras look at, as large as their mean distance to it."""
    centres = c2w_gl[:, :3, 3]
    focus = focus_point(centres, -c2w_gl[:, :3, 2])  # OpenGL cameras look down -Z
    half = np.linalg.norm(centres - focus, axis=1).mean()
    return np.stack([focus - half, focus + half])


def capture_layout(path: Path) -> str | None:
    """The `camera_layout` ("360" or "forward-facing") that `isrf pose` wrote into the
    scene's transforms.json; None for scenes from elsewhere."""
    layout = _read_json(find_transforms(Path(path))[0][0]).get("camera_layout")
    if layout not in (None, "360", "forward-facing"):
        raise IsrfError(f"{path}: camera_layout must be '360' or 'forward-facing', got {layout!r}")
    return layout


def load_transforms(path: Path, test_every: int, background: str = "white",
                    downscale: int = 1, ndc: bool = False) -> PosedImages:
    """downscale: read 1 / downscale copies of the photos (engine/data/downscale.py);
    intrinsics given for the full-size photos are scaled to the copies read.
    ndc: a forward-facing capture, moved into the frame NDC expects (as LLFF's) and
    trained in NDC; needs `depth_range` (isrf pose writes it)."""
    path = Path(path)
    files, poses, split = [], [], []
    camera_sources = []  # (frame, file metadata, json path, frame index) per kept frame
    missing = 0
    meta_first = None
    for json_path, part in find_transforms(path):
        meta = _read_json(json_path)
        meta_first = meta_first or (meta, json_path)
        for index, frame in enumerate(meta["frames"]):
            if not isinstance(frame, dict) or "file_path" not in frame:
                raise IsrfError(f"{json_path}: frame {index}: expected an object with 'file_path'")
            image_path = _image_path(json_path.parent, frame["file_path"])
            if image_path is None:
                missing += 1
                continue
            files.append(image_path)
            poses.append(_frame_pose(frame, json_path, index))
            split.append(part)
            camera_sources.append((frame, meta, json_path, index))
    if not files:
        raise IsrfError(f"{path}: none of the frames' image files exist")
    if missing:
        warnings.warn(f"{path}: skipped {missing} frame(s) whose image file is missing", stacklevel=2)

    full_sizes = [upright_size(f) for f in files]
    files = downscaled_files(files, downscale)
    images = read_images(files, background)
    height, width = images.shape[1:3]
    cams = [_scaled(_frame_camera(f, m, size, p, i), size, (width, height))
            for (f, m, p, i), size in zip(camera_sources, full_sizes)]
    c2w_gl = np.stack(poses)

    if "all" in split:
        train_ids, test_ids = holdout_split(len(files), test_every)
    else:
        train_ids = [i for i, s in enumerate(split) if s == "train"]
        test_ids = [i for i, s in enumerate(split) if s == "test"]
    meta, json_path = meta_first
    if ndc:
        to_scene = forward_facing_frame(c2w_gl, _near_depth(meta, json_path))
        c2w_gl = moved_poses(to_scene, c2w_gl)
        fx, fy = cams[0][0][:2]
        space = {"space": "ndc", "near": 1.0, "ndc_intrinsics": (fx, fy, float(width), float(height)),
                 "to_scene": torch.from_numpy(to_scene).float()}
    else:
        space = {"space": "bounded",
                 "bbox": torch.from_numpy(_scene_box(meta, c2w_gl, json_path)).float()}
    return PosedImages(
        images=torch.from_numpy(images),
        cameras=Cameras(
            c2w=torch.from_numpy(c2w_gl).float() @ OPENGL_TO_OPENCV,
            intrinsics=torch.tensor([c[0] for c in cams], dtype=torch.float32),
            distortion=torch.tensor([c[1] for c in cams], dtype=torch.float32),
            width=width, height=height),
        names=[f.name for f in files], files=[f.resolve() for f in files],
        train_ids=train_ids, test_ids=test_ids, background=BACKGROUNDS[background],
        source=path, **space)


def _near_depth(meta: dict, path: Path) -> float:
    """The nearest scene depth seen by the cameras (`depth_range`: [near, far], world units)."""
    try:
        near, far = (float(v) for v in meta["depth_range"])
    except KeyError:
        raise IsrfError(f"{path}: a forward-facing scene is trained in NDC, which needs "
                        "depth_range [near, far] (isrf pose writes it)") from None
    except (TypeError, ValueError):
        near = far = math.nan
    if not 0 < near < far < math.inf:
        raise IsrfError(f"{path}: depth_range must be two numbers 0 < near < far")
    return near
