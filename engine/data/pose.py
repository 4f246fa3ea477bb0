"""`isrf pose`: camera poses for a folder of photos, by structure-from-motion (pycolmap).

Writes a scene the transforms loader reads, all or nothing (built in a temporary folder
beside SCENE_DIR and renamed when done):

    SCENE_DIR/transforms.json   one camera (fl_x fl_y cx cy, distortion k1 k2 p1 p2),
                                OpenGL camera-to-world per registered photo, `aabb`,
                                `depth_range`, `camera_layout` (360 | forward-facing:
                                how the scene is trained, engine.data.choose_model)
    SCENE_DIR/images/           the photos, upright (EXIF orientation applied)
    SCENE_DIR/colmap/           COLMAP's database and the sparse model kept (model/)
    SCENE_DIR/pose_report.json  what `PoseReport` says

Decisions:
- One camera for all photos (COLMAP's SINGLE mode): a capture is one phone or one video,
  and the engine needs one image size. Photos of mixed sizes are refused. Its model is
  OPENCV (focal x/y, principal point, k1 k2 p1 p2: what phone lenses need, as nerfstudio
  does) unless `camera_model` names a simpler one.
- Matching: every pair (exhaustive) up to EXHAUSTIVE_LIMIT photos, which also closes
  the loop of a 360 orbit; beyond it, each photo with its neighbours in name order
  (sequential: video frames), with loop detection off (it needs a vocabulary tree,
  which cannot be fetched here). A sequential orbit drifts: 1.8% of the capture's size
  at its ends on the test orbit of 30 frames, against 0.2% exhaustive.
- The scene frame: COLMAP's world turned so that the cameras' mean up direction is +Z
  (`frames.upright_rotation`), centred on the scene box and scaled so that the box's
  longest side is 2. The box holds the sparse points seen by 3 photos or more inside the
  sphere around the point the cameras look at that reaches the mean camera (the object
  and what it stands on, not a room's walls), their 1st to 99th percentiles (to the
  99.9th upwards: objects' tops hold few points), padded by 5% of the longest side.
- The largest reconstruction is kept; photos outside it are reported with their number
  of features and their best verified match count, which says why they failed. COLMAP's
  threads make mapping vary from run to run (the room scene once split into a model of
  48 of its 72 photos and the rest): while photos are left out, mapping runs again with
  another seed, MAPPING_ATTEMPTS times at most (a few seconds each), keeping the largest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.atomic import write_json
from engine.data.frames import focus_point, upright_rotation
from engine.data.images import EXIF_ORIENTATION, list_images, open_upright, upright_size
from engine.data.video import extract_frames
from engine.errors import Cancelled, IsrfError

MIN_PHOTOS = 3
MIN_REGISTERED = 3
BOX_PERCENTILES = (1.0, 99.0)
DEPTH_PERCENTILES = (1.0, 99.0)
TOP_PERCENTILE = 99.9
BOX_PADDING = 0.05
"""Of the box's longest side, on every side."""
MIN_TRACK = 3
EXHAUSTIVE_LIMIT = 200
FORWARD_FACING = 0.9
MAPPING_ATTEMPTS = 3
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fl_x", "fl_y", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2"),
}
"""COLMAP's camera models that the loaders' distortion (k1 k2 p1 p2) covers: parameters."""


@dataclass
class PoseReport:
    photos: int
    registered: int
    points: int
    reprojection_error_px: float
    seconds: dict[str, float]
    layout: str = ""
    """"360" (the cameras look in from around the scene) or "forward-facing"."""
    long_side: int = 0
    """The photos' longest side, pixels."""
    failed: dict[str, str] = field(default_factory=dict)
    """Photo name -> why it was not registered."""

    def summary(self) -> str:
        lines = [f"registered {self.registered} of {self.photos} photos, {self.points} sparse "
                 f"points, mean reprojection error {self.reprojection_error_px:.2f} px",
                 f"camera layout: {self.layout}"]
        lines += [f"  not registered: {name}: {why}" for name, why in self.failed.items()]
        return "\n".join(lines)


def pose_photos(photos_dir: Path, out: Path, max_size: int = 1600,
                camera_model: str = "OPENCV", progress: bool = True) -> PoseReport:
    """Pose the photos of `photos_dir` and write the scene to `out` (module docstring)."""
    import pycolmap  # imported here: only posing needs it

    if camera_model not in CAMERA_MODELS:
        raise IsrfError(f"camera model {camera_model!r}: choose one of {', '.join(CAMERA_MODELS)}")
    photos = _checked_photos(photos_dir)
    out = _free_scene_folder(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    cancellation = _Cancellation()
    try:
        with cancellation.on_sigint():
            report = _pose_into(pycolmap, photos, staging, max_size, camera_model, cancellation,
                                progress)
        if out.exists():
            out.rmdir()
        staging.rename(out)
        umask = os.umask(0)
        os.umask(umask)
        out.chmod(0o777 & ~umask)  # mkdtemp made it private
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _free_scene_folder(out: Path) -> Path:
    """`out`, checked to be new or empty (a scene there is never written into)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IsrfError(f"{out}: already exists and is not empty; choose another --out "
                        "or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def pose_video(video: Path, fps: float, out: Path, max_size: int = 1600,
               camera_model: str = "OPENCV", progress: bool = True) -> PoseReport:
    """Take `fps` frames a second of `video` and pose them."""
    out = _free_scene_folder(out)
    frames = Path(tempfile.mkdtemp(prefix=f".{out.name}.frames-", dir=out.parent))
    try:
        try:
            extract_frames(video, fps, frames, progress)
        except KeyboardInterrupt:
            raise Cancelled("posing cancelled while reading the video; nothing was written") from None
        return pose_photos(frames, out, max_size, camera_model=camera_model, progress=progress)
    finally:
        shutil.rmtree(frames, ignore_errors=True)


def _checked_photos(photos_dir: Path) -> list[Path]:
    photos = list_images(Path(photos_dir))
    if len(photos) < MIN_PHOTOS:
        raise IsrfError(f"{photos_dir}: {len(photos)} photo(s); posing needs at least "
                        f"{MIN_PHOTOS} overlapping photos (20 or more work best)")
    sizes = {}
    for photo in photos:
        sizes.setdefault(upright_size(photo), photo)
    if len(sizes) > 1:
        (size_a, a), (size_b, b) = list(sizes.items())[:2]
        raise IsrfError(f"{photos_dir}: photos of mixed sizes ({a.name} is {size_a[0]}x"
                        f"{size_a[1]}, {b.name} is {size_b[0]}x{size_b[1]}); one capture at "
                        "one size is needed")
    return photos


def _pose_into(pycolmap, photos: list[Path], folder: Path, max_size: int, camera_model: str,
               cancellation: "_Cancellation", progress: bool) -> PoseReport:
    images, colmap = folder / "images", folder / "colmap"
    images.mkdir()
    (colmap / "sparse").mkdir(parents=True)
    for photo in tqdm(photos, desc="copy photos upright", unit="photo", disable=not progress):
        cancellation.check()
        _copy_upright(photo, images / photo.name)
    database = colmap / "database.db"
    model, seconds = _run_colmap(pycolmap, images, database, len(photos), max_size,
                                 camera_model, cancellation, progress)
    names = [photo.name for photo in photos]
    if model is None:
        raise IsrfError(f"no two photos overlap enough to start a reconstruction "
                        f"({_best_pair(pycolmap, database)}); take photos that share more "
                        "of the scene, each a small step from the last")
    (colmap / "model").mkdir()
    model.write(colmap / "model")  # the one kept; the attempts' folders go
    shutil.rmtree(colmap / "sparse")
    if model.num_reg_images() < MIN_REGISTERED:
        raise IsrfError(f"only {model.num_reg_images()} of {len(names)} photos could be "
                        "placed; the photos do not overlap enough")
    camera = next(iter(model.cameras.values()))
    report = PoseReport(
        photos=len(names), registered=model.num_reg_images(), points=model.num_points3D(),
        reprojection_error_px=float(model.compute_mean_reprojection_error()),
        seconds={k: round(v, 1) for k, v in seconds.items()},
        layout=camera_layout(np.stack([_camera_to_world(model.image(i))
                                       for i in model.reg_image_ids()])),
        long_side=max(camera.width, camera.height),
        failed=_why_not_registered(pycolmap, database, model, names))
    _write_transforms(model, folder / "transforms.json", report)
    write_json(folder / "pose_report.json", asdict(report))
    return report


def _run_colmap(pycolmap, images: Path, database: Path, count: int, max_size: int,
                camera_model: str, cancellation: "_Cancellation", progress: bool):
    """Features, matching and mapping of the `count` photos in `images` -> the largest
    reconstruction (None: none could start) and the seconds of each stage."""
    seconds = {}
    steps = tqdm(total=3, desc="structure from motion", unit="stage", disable=not progress)
    with steps, _quiet_colmap(pycolmap):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = max_size
        steps.set_postfix_str("features")
        seconds["features"] = cancellation.run(pycolmap, lambda token: pycolmap.extract_features(
            database, images, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
            extraction_options=extraction, device=pycolmap.Device.cpu, cancellation_token=token))
        steps.update()
        steps.set_postfix_str("matching")
        exhaustive = count <= EXHAUSTIVE_LIMIT
        match = pycolmap.match_exhaustive if exhaustive else pycolmap.match_sequential
        seconds["matching"] = cancellation.run(pycolmap, lambda token: match(
            database, device=pycolmap.Device.cpu, cancellation_token=token))
        steps.update()
        steps.set_postfix_str("mapping")
        seconds["mapping"], model = 0.0, None
        for attempt in range(MAPPING_ATTEMPTS):
            found, sparse = {}, database.parent / "sparse" / f"attempt_{attempt}"
            sparse.mkdir()
            options = pycolmap.IncrementalPipelineOptions()
            options.random_seed = attempt
            seconds["mapping"] += cancellation.run(pycolmap, lambda token: found.update(
                pycolmap.incremental_mapping(database, images, sparse, options=options,
                                             cancellation_token=token)))
            best = max(found.values(), key=lambda r: r.num_reg_images(), default=None)
            if best is not None and (model is None or best.num_reg_images() > model.num_reg_images()):
                model = best
            if model is not None and model.num_reg_images() == count:
                break
        steps.update()
    return model, seconds


def _copy_upright(photo: Path, target: Path) -> None:
    """The photo as its pixels should be seen: a plain copy unless EXIF turns it."""
    with Image.open(photo) as image:
        turned = image.getexif().get(EXIF_ORIENTATION, 1) != 1
    if not turned:
        shutil.copy2(photo, target)
        return
    image = open_upright(photo)
    if target.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(target, quality=95)
    else:
        image.save(target)


class _Cancellation:
    """Ctrl+C while posing: COLMAP's running stage stops through its own cancellation
    token, and posing stops before the next step. Each stage runs in a worker thread,
    so that the main thread can take the signal while COLMAP works."""

    def __init__(self):
        self.requested = False
        self.token = None

    @contextlib.contextmanager
    def on_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only (the server cancels otherwise)
            return
        previous = signal.signal(signal.SIGINT, self.request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def request(self, *_) -> None:
        self.requested = True
        if self.token is not None:
            self.token.cancel()

    def check(self) -> None:
        if self.requested:
            raise Cancelled("posing cancelled; nothing was written")

    def run(self, pycolmap, work) -> float:
        """Run one COLMAP stage, `work(token)`; returns its seconds."""
        self.check()
        self.token = pycolmap.CancellationToken()
        errors = []

        def stage():
            try:
                work(self.token)
            except Exception as error:  # re-raised in the caller's thread
                errors.append(error)

        start = time.perf_counter()
        worker = threading.Thread(target=stage, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)  # returns to Python now and then, so the handler can run
        self.check()
        if errors:
            raise IsrfError(f"structure from motion failed: {errors[0]}") from errors[0]
        return time.perf_counter() - start


@contextlib.contextmanager
def _quiet_colmap(pycolmap):
    """COLMAP logs every step at INFO; keep its warnings and errors only."""
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _verified_matches(pycolmap, database: Path) -> tuple[dict[int, str], dict[int, int], dict[int, int]]:
    """Database image id -> name, -> keypoint count, -> its best verified inlier count."""
    db = pycolmap.Database.open(database)
    try:
        names = {image.image_id: image.name for image in db.read_all_images()}
        keypoints = {i: db.num_keypoints_for_image(i) for i in names}
        best = dict.fromkeys(names, 0)
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
        for pair_id, count in zip(pair_ids, counts):
            a, b = _pair_to_images(int(pair_id))
            best[a] = max(best.get(a, 0), int(count))
            best[b] = max(best.get(b, 0), int(count))
    finally:
        db.close()
    return names, keypoints, best


def _pair_to_images(pair_id: int) -> tuple[int, int]:
    """COLMAP's pair id encodes two image ids: id1 * 2^31 + id2."""
    return pair_id // 2147483647, pair_id % 2147483647


def _best_pair(pycolmap, database: Path) -> str:
    _, keypoints, best = _verified_matches(pycolmap, database)
    return (f"the best pair of photos shares {max(best.values(), default=0)} verified "
            f"matches; features per photo: {min(keypoints.values(), default=0)} to "
            f"{max(keypoints.values(), default=0)}")


def _why_not_registered(pycolmap, database: Path, model, names: list[str]) -> dict[str, str]:
    registered = {model.image(i).name for i in model.reg_image_ids()}
    ids, keypoints, best = _verified_matches(pycolmap, database)
    by_name = {name: i for i, name in ids.items()}
    failed = {}
    for name in names:
        if name in registered:
            continue
        i = by_name.get(name)
        if i is None:
            failed[name] = "COLMAP could not read it"
        else:
            failed[name] = (f"{keypoints[i]} features, at most {best[i]} verified matches "
                            "with another photo: too little overlap with the rest")
    return failed


def _write_transforms(model, path: Path, report: PoseReport) -> None:
    camera = next(iter(model.cameras.values()))
    ids = sorted(model.reg_image_ids(), key=lambda i: model.image(i).name)
    c2w = np.stack([_camera_to_world(model.image(i)) for i in ids])      # [N, 4, 4] OpenCV
    points = _reliable_points(model)                                     # [P, 3]
    to_scene, box = _scene_frame(c2w, points)
    frames = []
    for i, pose in zip(ids, c2w):
        moved = to_scene @ pose
        moved[:3, :3] /= np.linalg.norm(moved[:3, :3], axis=0, keepdims=True)  # no scale
        frames.append({"file_path": f"images/{model.image(i).name}",
                       "transform_matrix": (moved @ OPENCV_TO_OPENGL).tolist()})
    write_json(path, {
        "camera_model": camera.model_name, "w": camera.width, "h": camera.height,
        **camera_keys(camera.model_name, [float(v) for v in camera.params]),
        "aabb": box.tolist(), "depth_range": _depth_range(model, ids, to_scene),
        "colmap_to_scene": to_scene.tolist(),
        "camera_layout": report.layout, "registered": report.registered,
        "photos": report.photos, "frames": frames})


def _depth_range(model, ids: list[int], to_scene: np.ndarray) -> list[float]:
    """[near, far] depth of the sparse points in the scene frame's units: per photo the
    1st and 99th percentiles of the depths of the points it sees (LLFF's poses_bounds
    takes 0.1 and 99.9), then the least and the largest over photos. NDC needs `near`."""
    seen: dict[int, list] = {i: [] for i in ids}
    for point in model.points3D.values():
        for element in point.track.elements:
            if element.image_id in seen:
                seen[element.image_id].append(point.xyz)
    nears, fars = [], []
    for i, xyz in seen.items():
        if not xyz:
            continue
        world_to_camera = model.image(i).cam_from_world().matrix()          # [3, 4]
        depths = (np.array(xyz) @ world_to_camera[:, :3].T + world_to_camera[:, 3])[:, 2]
        low, high = np.percentile(depths[depths > 0], DEPTH_PERCENTILES)
        nears.append(low)
        fars.append(high)
    scale = float(np.linalg.norm(to_scene[:3, 0]))
    return [min(nears) * scale, max(fars) * scale]


def _reliable_points(model) -> np.ndarray:
    """Sparse points [P, 3] seen by 3 photos or more: two-view points are often wrong."""
    points = [p.xyz for p in model.points3D.values() if p.track.length() >= MIN_TRACK]
    if len(points) < 20:
        points = [p.xyz for p in model.points3D.values()]
    return np.array(points)


def camera_keys(model_name: str, params: list[float]) -> dict[str, float]:
    """COLMAP camera parameters -> transforms.json intrinsics and OpenCV distortion."""
    names = CAMERA_MODELS[model_name]
    values = dict(zip(names, params))
    if "f" in values:
        values["fl_x"] = values["fl_y"] = values.pop("f")
    return {key: values.get(key, 0.0) for key in ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")}


def camera_layout(c2w: np.ndarray) -> str:
    """"forward-facing" when the cameras [N, 4, 4] (OpenCV) all look one way (their unit
    viewing directions' mean is longer than FORWARD_FACING, within about 25 degrees of
    it), else "360"."""
    axes = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    return "forward-facing" if np.linalg.norm(axes.mean(0)) > FORWARD_FACING else "360"


def _camera_to_world(image) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3] = image.cam_from_world().inverse().matrix()
    return c2w


def _inside_view_sphere(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The points within the sphere around what the cameras look at that reaches them."""
    centres = c2w[:, :3, 3]
    focus = focus_point(centres, c2w[:, :3, 2])
    radius = np.linalg.norm(centres - focus, axis=1).mean()
    inside = points[np.linalg.norm(points - focus, axis=1) < radius]
    return inside if len(inside) >= 20 else points


def _scene_frame(c2w: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The similarity [4, 4] from COLMAP's world to the scene frame, and the scene box
    [2, 3] in that frame (module docstring)."""
    rotation = np.eye(4)
    rotation[:3, :3] = upright_rotation(c2w)
    turned = _inside_view_sphere(c2w, points) @ rotation[:3, :3].T
    low, high = np.percentile(turned, BOX_PERCENTILES, axis=0)
    # Objects' tops hold few points (the floor and the table most): up to the highest
    # points, or the top percent is cut off them (the room's bottle lost its top).
    high[2] = np.percentile(turned[:, 2], TOP_PERCENTILE)
    padded = (high - low) + 2 * BOX_PADDING * (high - low).max()
    scale = 2.0 / max(float(padded.max()), 1e-9)
    centring = np.eye(4)
    centring[:3, 3] = -(low + high) / 2
    # Scaling and centring keep the axes, so the box is the turned points' one, moved.
    box = np.stack([-padded / 2, padded / 2]) * scale
    return np.diag([scale, scale, scale, 1.0]) @ centring @ rotation, box
