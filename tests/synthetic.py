"""Small analytic scenes written as real files, for tests that must run in seconds.

Spheres are ray-traced exactly (numpy), so images, poses and masks are ground truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

# (centre, radius, colour) of each sphere, in world units (z up).
SPHERES = (
    ((-0.35, 0.0, 0.0), 0.35, (0.9, 0.2, 0.2)),
    ((0.4, 0.15, 0.05), 0.3, (0.2, 0.7, 0.3)),
    ((0.0, -0.45, -0.1), 0.22, (0.2, 0.3, 0.9)),
)

TRAIN = [
    "field.num_voxels=110592", "field.num_voxels_start=8000", "field.upscale_steps=[100,200]",
    "train.batch_rays=1024", "train.eval_every=0", "train.checkpoint_every=0", "train.steps=400",
    "features.input_size=96", "features.dims=16", "distill.batch_rays=1024",
    "distill.checkpoint_every=0", "distill.steps=200",
]
"""Settings that train the sphere scene in well under a minute on 2 CPU cores."""


def look_at_gl(eye: np.ndarray, target=np.zeros(3), up=np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenGL/Blender camera-to-world [4, 4] (looks down -Z, +Y up)."""
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(back, right), back], 1)
    c2w[:3, 3] = eye
    return c2w


def sky_colour(dirs: np.ndarray) -> np.ndarray:
    """A smooth sky by direction [..., 3] -> RGB [..., 3]: bluer up, warmer to +x."""
    return np.clip(np.stack([0.55 + 0.3 * dirs[..., 0], 0.5 + 0.2 * dirs[..., 1],
                             0.6 + 0.35 * dirs[..., 2]], -1), 0, 1)


def pixel_rays(c2w_gl: np.ndarray, focal: float, size: int, k1: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Origin [3] and unit directions [H, W, 3] through the pixel centres of a square image.
    k1: a lens's radial distortion (OpenCV's, x_d = x (1 + k1 r^2)): each pixel's ray is
    the undistorted one, found by fixed-point iteration."""
    j, i = np.mgrid[0:size, 0:size] + 0.5
    xd, yd = (i - size / 2) / focal, (j - size / 2) / focal   # OpenCV: y down
    x, y = xd, yd
    for _ in range(30):
        radial = 1 + k1 * (x * x + y * y)
        x, y = xd / radial, yd / radial
    dirs = np.stack([x, -y, -np.ones_like(i)], -1)            # OpenGL camera
    dirs = dirs @ c2w_gl[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = c2w_gl[:3, 3]
    return origin, dirs


def trace(c2w_gl: np.ndarray, focal: float, size: int, sky: bool = False
          ) -> tuple[np.ndarray, np.ndarray]:
    """RGBA float [H, W, 4] and instance ids [H, W] (0 = none) of the spheres; sky:
    opaque, with `sky_colour` where no sphere is hit."""
    origin, dirs = pixel_rays(c2w_gl, focal, size)
    best = np.full((size, size), np.inf)
    ids = np.zeros((size, size), np.uint8)
    rgba = np.zeros((size, size, 4))
    light = np.array([0.3, -0.4, 0.85]) / np.linalg.norm([0.3, -0.4, 0.85])
    for index, (centre, radius, colour) in enumerate(SPHERES, start=1):
        oc = origin - np.asarray(centre)
        b = dirs @ oc
        disc = b * b - (oc @ oc - radius * radius)
        t = -b - np.sqrt(np.maximum(disc, 0))
        hit = (disc > 0) & (t > 0) & (t < best)
        normal = (origin + t[..., None] * dirs - centre) / radius
        shade = 0.35 + 0.65 * np.clip(normal @ light, 0, 1)
        stripes = 0.85 + 0.15 * np.sign(np.sin(6 * normal[..., 2]))  # some texture
        rgba[hit, :3] = (np.asarray(colour) * (shade * stripes)[..., None])[hit]
        rgba[hit, 3] = 1
        ids[hit] = index
        best[hit] = t[hit]
    if sky:
        missed = ids == 0
        rgba[missed, :3] = sky_colour(dirs)[missed]
        rgba[..., 3] = 1
    return rgba, ids


def make_sphere_scene(root: Path, views: int = 24, size: int = 48, radius: float = 3.0,
                      fov_deg: float = 40.0, forward_facing: bool = False,
                      sky: bool = False) -> Path:
    """Write transforms.json + images/ + masks/ of the sphere scene; returns `root`.

    Cameras circle the spheres on a hemisphere, or (forward_facing) all stand on one
    side within a narrow cone, as an LLFF capture does. sky: opaque images, a sky behind
    the spheres (`sky_colour`) instead of transparency.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    focal = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    frames = []
    for k in range(views):
        spread = (k * 0.618034) % 1  # golden-ratio sequence in [0, 1)
        if forward_facing:
            azimuth = math.radians(-15 + 30 * spread)
            elevation = math.radians(10 + 25 * ((k * 0.754878) % 1))
        else:
            azimuth = k * 2.399963  # golden angle
            elevation = math.radians(15 + 60 * spread)
        eye = radius * np.array([math.cos(elevation) * math.cos(azimuth),
                                 math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        c2w = look_at_gl(eye)
        rgba, ids = trace(c2w, focal, size, sky)
        name = f"r_{k:03d}.png"
        Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(root / "images" / name)
        Image.fromarray(ids, "L").save(root / "masks" / name)
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w.tolist(),
                       "mask_path": f"masks/{name}"})
    meta = {"camera_angle_x": math.radians(fov_deg), "w": size, "h": size,
            "aabb": [[-1.0, -1.0, -0.6], [1.0, 1.0, 0.6]], "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


def write_llff(src: Path, dst: Path) -> Path:
    """Re-encode a scene written by `make_sphere_scene` as an LLFF capture in `dst`:
    poses_bounds.npy (LLFF's [down, right, back] rotation columns) + images/."""
    meta = json.loads((src / "transforms.json").read_text())
    focal = 0.5 * meta["w"] / math.tan(0.5 * meta["camera_angle_x"])
    (dst / "images").mkdir(parents=True)
    rows = []
    for index, frame in enumerate(meta["frames"]):
        c2w = np.asarray(frame["transform_matrix"])[:3]  # OpenGL [right, up, back, centre]
        down_right_back = np.stack([-c2w[:, 1], c2w[:, 0], c2w[:, 2], c2w[:, 3]], 1)
        hwf = np.array([[meta["h"]], [meta["w"]], [focal]])
        rows.append(np.concatenate([np.concatenate([down_right_back, hwf], 1).ravel(), [2.0, 4.5]]))
        Image.open(src / frame["file_path"]).convert("RGB").save(dst / "images" / f"img_{index:03d}.png")
    np.save(dst / "poses_bounds.npy", np.stack(rows))
    return dst


# The textured scene: a floor and boxes with a solid noise texture (rich in the corners
# and blobs that structure-from-motion finds), ray-traced exactly like the spheres.
BOXES = (((-0.9, -0.5, 0.0), (-0.2, 0.3, 0.8)), ((0.2, -0.8, 0.0), (0.9, -0.2, 0.5)),
         ((0.1, 0.4, 0.0), (0.6, 0.9, 1.1)))
FLOOR_HALF = 2.0


def _value_noise(points: np.ndarray, frequency: float, seed: int) -> np.ndarray:
    """Smooth random values in [0, 1] at points [..., 3], varying `frequency` times a unit."""
    table = np.random.default_rng(seed).random((32, 32, 32))
    scaled = points * frequency
    base = np.floor(scaled).astype(int)
    frac = scaled - base
    frac = frac * frac * (3 - 2 * frac)  # smoothstep between lattice values
    total = np.zeros(points.shape[:-1])
    for corner in np.ndindex(2, 2, 2):
        index = (base + np.asarray(corner)) % 32
        weight = np.prod(np.where(np.asarray(corner), frac, 1 - frac), axis=-1)
        total += weight * table[index[..., 0], index[..., 1], index[..., 2]]
    return total


def solid_texture(points: np.ndarray) -> np.ndarray:
    """RGB [..., 3] of surface points [..., 3]: noise at three scales, per channel."""
    channels = [sum(_value_noise(points, f, seed=3 * c + k) / (k + 1)
                    for k, f in enumerate((3.0, 9.0, 27.0))) for c in range(3)]
    return np.clip(np.stack(channels, -1) / 1.83, 0, 1)


def trace_textured(c2w_gl: np.ndarray, focal: float, size: int, k1: float = 0.0) -> np.ndarray:
    """Opaque RGB float [H, W, 3] of the textured scene, a plain sky behind (k1: through a
    lens with that radial distortion)."""
    origin, dirs = pixel_rays(c2w_gl, focal, size, k1)
    best = np.full((size, size), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -origin[2] / dirs[..., 2]
        floor = origin + t[..., None] * dirs
        hit = (t > 0) & (np.abs(floor[..., 0]) < FLOOR_HALF) & (np.abs(floor[..., 1]) < FLOOR_HALF)
        best[hit] = t[hit]
        for low, high in BOXES:  # slab test
            t1, t2 = (np.asarray(low) - origin) / dirs, (np.asarray(high) - origin) / dirs
            near, far = np.minimum(t1, t2).max(-1), np.maximum(t1, t2).min(-1)
            hit = (near <= far) & (near > 0) & (near < best)
            best[hit] = near[hit]
    rgb = np.broadcast_to(np.array([0.55, 0.65, 0.8]), dirs.shape).copy()
    seen = np.isfinite(best)
    points = origin + np.where(seen, best, 0)[..., None] * dirs
    rgb[seen] = solid_texture(points[seen])
    return rgb


def make_textured_scene(root: Path, views: int = 20, size: int = 160, radius: float = 3.6,
                        fov_deg: float = 50.0, k1: float = 0.0) -> Path:
    """Write transforms.json + images/ of the textured scene from cameras on a ring
    around it (a 360 capture), through a lens of radial distortion k1; returns `root`."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    focal = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    frames = []
    for k in range(views):
        azimuth = 2 * math.pi * k / views
        elevation = math.radians(30 + 12 * math.sin(3 * azimuth))
        eye = radius * np.array([math.cos(elevation) * math.cos(azimuth),
                                 math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        c2w = look_at_gl(eye, target=np.array([0.0, 0.0, 0.3]))
        name = f"v_{k:03d}.png"
        Image.fromarray(np.round(trace_textured(c2w, focal, size, k1) * 255).astype(np.uint8)).save(
            root / "images" / name)
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w.tolist()})
    meta = {"camera_angle_x": math.radians(fov_deg), "w": size, "h": size, "k1": k1,
            "aabb": [[-FLOOR_HALF, -FLOOR_HALF, -0.1], [FLOOR_HALF, FLOOR_HALF, 1.3]],
            "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root
