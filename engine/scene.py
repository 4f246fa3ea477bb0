"""`Scene`: one loaded scene and every operation on it.

The CLI (and later the loopback server and the Blender add-on) are thin layers over
these methods. A Scene owns its config, its posed images (loaded on first use), its
radiance field (trained, or restored from a checkpoint), its 2D feature maps (extracted
or read from the cache on first use), its distilled feature field and its segmentation
session (segments made from strokes, their masks, renders and meshes).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from engine.atomic import atomic_path, write_json
from engine.config import Config, MeshConfig, config_from_saved, config_to_dict
from engine.data import Cameras, PosedImages, load_scene
from engine.data.frames import blender_camera_to_scene, blender_transform
from engine.errors import Cancelled, IsrfError
from engine.features.extract import extract_features
from engine.features.maps import FeatureMaps
from engine.features.visualize import FeatureColoring
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_image, render_segment_image
from engine.mesh.extract import extract_mesh
from engine.metrics import image_metrics
from engine.segment.session import Photographs, SegmentationSession, StrokeResult
from engine.segment.strokes import Stroke, StrokeCamera, parse_stroke
from engine.train.checkpoint import load_checkpoint, save_checkpoint
from engine.train.distiller import Distiller, DistillReport, feature_cosine
from engine.train.trainer import CHECKPOINT_NAME, Trainer, TrainReport, field_for

ViewSet = Literal["test", "train", "all"]


def resolve_device(name: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or None (CUDA when available, else CPU)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise IsrfError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise IsrfError(f"--device {name!r}: expected cpu or cuda") from None


def _absolute_data_path(config: Config) -> Config:
    """Make data.path absolute so checkpoints work from any working directory."""
    data = dataclasses.replace(config.data, path=str(Path(config.data.path).expanduser().resolve()))
    return dataclasses.replace(config, data=data)


class Scene:
    def __init__(self, config: Config, device: str | torch.device | None = None):
        self.config = _absolute_data_path(config)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self._data: PosedImages | None = None
        self._feature_maps: FeatureMaps | None = None
        self.field: RadianceField | None = None
        self.features: FeatureField | None = None
        self.step = 0
        self._color_state: dict | None = None
        """The colour stage's checkpoint content, kept so the feature stage can save beside it."""
        self._feature_state: dict | None = None
        """The checkpoint's `features` section (to resume distillation from)."""
        self._segmentation: SegmentationSession | None = None

    # ----- loading --------------------------------------------------------------
    @property
    def data(self) -> PosedImages:
        if self._data is None:
            self._data = load_scene(self.config.data)
        return self._data

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None) -> "Scene":
        content = load_checkpoint(path)
        scene = cls(config_from_saved(content["config"], f"{path} (config)"), device)
        scene._restore(content)
        return scene

    def _restore(self, content: dict) -> None:
        self.field = RadianceField.from_state_dict(self.config.field, content["field"]).to(self.device)
        self.step = int(content["step"])
        self._feature_state = content.pop("features", None)
        self._color_state = content
        if self._feature_state is not None:
            self.features = FeatureField.from_state_dict(self._feature_state["field"]).to(self.device)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.config.train.out_dir) / CHECKPOINT_NAME

    def _require_field(self) -> RadianceField:
        if self.field is None:
            raise IsrfError("this scene has no trained field yet: train it or load a checkpoint")
        return self.field

    # ----- training -------------------------------------------------------------
    def train(self, resume: bool = False, progress: bool = True,
              cancel: threading.Event | None = None, final_eval: bool = True) -> TrainReport:
        """Train the field to `train.steps` (resume: continue from the run's checkpoint).

        final_eval: report the test PSNR at the end (skip it when rendering the test views
        next, which measures them anyway)."""
        state = {}
        if resume:
            if not self.checkpoint_path.is_file():
                raise IsrfError(f"{self.checkpoint_path}: nothing to resume (no checkpoint yet)")
            content = load_checkpoint(self.checkpoint_path)
            self._restore(content)
            if self.step >= self.config.train.steps:  # colour stage done: keep it as it is
                return TrainReport(self.step, content["elapsed"], None, content["history"],
                                   self.checkpoint_path)
            state = dict(start_step=content["step"], optimizer_state=content["optimizer"],
                         history=content["history"], elapsed=content["elapsed"])
            torch.set_rng_state(content["rng"])
        else:
            torch.manual_seed(self.config.train.seed)
            self.field = field_for(self.data, self.config)
        # More colour training makes any distilled features stale: they start over.
        self.features, self._feature_state = None, None
        self._segmentation = None
        trainer = Trainer(self.data, self.config, self.field, self.device, **state)
        report = trainer.run(progress=progress, cancel=cancel, final_eval=final_eval)
        self.step = trainer.step
        self._color_state = trainer.checkpoint_content()
        return report

    # ----- features -------------------------------------------------------------
    def extract_features(self, progress: bool = True, cancel: threading.Event | None = None,
                         use_cache: bool = True) -> FeatureMaps:
        """The 2D feature maps of every image (from the cache when current)."""
        self._feature_maps = extract_features(self.data, self.config.features, self.device,
                                              progress, cancel, use_cache)
        return self._feature_maps

    @property
    def feature_maps(self) -> FeatureMaps:
        if self._feature_maps is None:
            self.extract_features(progress=False)
        return self._feature_maps

    def distill(self, resume: bool = False, progress: bool = True,
                cancel: threading.Event | None = None, final_eval: bool = True) -> DistillReport:
        """Distil the 2D features into a feature field (`distill.steps`), after the colour
        stage. resume: continue the checkpoint's feature stage."""
        field = self._require_field()
        if self._color_state is None:
            raise IsrfError("distillation needs the colour stage's checkpoint: train first "
                            "or load a checkpoint")
        maps = self.extract_features(progress, cancel)
        state = self._feature_state if resume else None
        if state is not None and state.get("maps_key") != maps.key:
            raise IsrfError(f"{self.checkpoint_path}: its features were distilled from other 2D "
                            f"features than the current config gives; train without --resume")
        if state is not None:
            features = FeatureField.from_state_dict(state["field"])
            resume_args = dict(start_step=state["step"], optimizer_state=state["optimizer"],
                               history=state["history"], elapsed=state["elapsed"])
        else:
            torch.manual_seed(self.config.train.seed)
            features = FeatureField(maps.dims, self.config.distill.rank, field.resolution)
            resume_args = {}
        distiller = Distiller(self.data, self.config, field, features, maps, self.device,
                              self._save_with_features, **resume_args)
        self.features = distiller.features
        self._segmentation = None  # its voxel features came from the old feature field
        report = distiller.run(progress=progress, cancel=cancel, final_eval=final_eval)
        self._feature_state = distiller.checkpoint_section()
        return report

    def _save_with_features(self, section: dict) -> Path:
        # The colour stage as it was saved, under the config this run uses (distill.* may differ).
        content = {**self._color_state, "config": config_to_dict(self.config)}
        save_checkpoint(self.checkpoint_path, **content, features=section)
        return self.checkpoint_path

    # ----- rendering ------------------------------------------------------------
    def view_ids(self, which: ViewSet) -> list[int]:
        data = self.data
        return {"test": data.test_ids, "train": data.train_ids,
                "all": list(range(len(data.names)))}[which]

    def _check_view(self, index: int) -> None:
        if not 0 <= index < len(self.data.names):
            raise IsrfError(f"view {index} does not exist (the scene has {len(self.data.names)})")

    def render(self, cam_id: int) -> dict[str, torch.Tensor]:
        """Render dataset view `cam_id`: rgb [H, W, 3], depth [H, W], opacity [H, W]."""
        field = self._require_field()
        self._check_view(cam_id)
        return render_image(field, RaySpace.of(self.data), self.data.cameras.to(self.device), cam_id)

    def render_views(self, which: ViewSet, out_dir: str | Path, progress: bool = True,
                     cancel: threading.Event | None = None, features: bool = False) -> dict:
        """Render a view set to PNGs and write metrics.json (PSNR / SSIM per view).

        features: also write, per view, the rendered features beside the 2D backbone
        features (one shared PCA-to-RGB colouring) and add their mean cosine similarity
        to the metrics."""
        out_dir = Path(out_dir)
        ids = self.view_ids(which)
        if not ids:
            raise IsrfError(f"the scene has no {which} views")
        if features and self.features is None:
            raise IsrfError("this checkpoint has no feature field: train with distill.steps > 0")
        coloring = self._feature_coloring(ids) if features else None
        rows = []
        for i in tqdm(ids, desc=f"render {which}", disable=not progress, unit="view"):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"rendering cancelled after {len(rows)} of {len(ids)} views")
            rendered = self.render(i)["rgb"].clamp(0, 1).cpu().numpy()
            name = f"{i:03d}_{Path(self.data.names[i]).stem}.png"
            _write_png(out_dir / name, np.round(rendered * 255).astype(np.uint8))
            target = self.data.image_float(i).numpy()
            split = "test" if i in self.data.test_ids else "train"
            row = {"index": i, "name": self.data.names[i], "split": split, "file": name,
                   **image_metrics(rendered, target)}
            if coloring is not None:
                row.update(self._render_feature_view(i, coloring, out_dir))
            rows.append(row)
        keys = ("psnr", "ssim") + (("feature_cosine", "feature_cosine_all") if features else ())
        metrics = {
            "scene": str(self.data.source), "views": which, "step": self.step,
            "mean": {key: _mean([r[key] for r in rows]) for key in keys},
            "per_view": rows,
        }
        write_json(out_dir / "metrics.json", metrics)
        return metrics

    # ----- any camera -----------------------------------------------------------
    @property
    def to_blender(self) -> np.ndarray:
        """The suggested scene-frame -> Blender-world similarity [4, 4] float64
        (engine/data/frames.py) that cameras, strokes, renders and meshes share."""
        return blender_transform(self.data)

    def in_scene_frame(self, camera: StrokeCamera) -> StrokeCamera:
        """A request's camera with its c2w in the scene frame, OpenCV convention."""
        if camera.frame == "scene":
            return camera
        c2w = np.asarray(camera.c2w, np.float64)
        if camera.convention == "opencv":   # frames.py converts OpenGL (Blender's) cameras
            c2w = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
        c2w = blender_camera_to_scene(c2w, self.to_blender)
        return camera.model_copy(update={"c2w": tuple(map(tuple, c2w.tolist())),
                                         "convention": "opencv", "frame": "scene"})

    def camera(self, spec: StrokeCamera, scale: float = 1.0) -> Cameras:
        """A request's camera (a dataset view or an explicit one, in either frame) as a
        one-camera `Cameras`, its image `scale` times the size (a quick preview: < 1)."""
        camera = self.in_scene_frame(spec).resolve(self.data.cameras.to(self.device))
        if scale == 1.0:
            return camera
        width = max(1, round(camera.width * scale))
        height = max(1, round(camera.height * scale))
        factor = torch.tensor([width / camera.width, height / camera.height] * 2,
                              device=camera.intrinsics.device)
        return Cameras(camera.c2w, camera.intrinsics * factor, camera.distortion, width, height)

    def render_camera(self, camera: Cameras, segment: str | None = None,
                      preview: bool = False, segment_alone: bool = True
                      ) -> dict[str, torch.Tensor]:
        """Render a one-camera `Cameras`: rgb [H, W, 3], depth [H, W] (along the optical
        axis, scene units; bounded scenes), opacity [H, W]; with a segment also its render
        alone, segment_rgb [H, W, 3] and segment_opacity [H, W], and visible [H, W]: its
        share of what the camera sees. preview: the renderer's quick approximation (for a
        moving view; `renderer.render_rays`). segment_alone=False: without segment_rgb
        and segment_opacity (an overlay needs only `visible`)."""
        field = self._require_field()
        space = RaySpace.of(self.data)
        if segment is None:
            return render_image(field, space, camera, 0, preview=preview)
        keep = self.segmentation.mask_grid(segment)
        both = render_segment_image(field, space, camera, 0, keep, scene_rgb=True,
                                    preview=preview, alone=segment_alone)
        result = {"rgb": both["scene_rgb"], "depth": both["scene_depth"],
                  "opacity": both["scene_opacity"], "visible": both["visible"]}
        if segment_alone:
            result.update(segment_rgb=both["rgb"], segment_opacity=both["opacity"])
        return result

    def stroke(self, segment: str, stroke: Stroke | dict) -> StrokeResult:
        """Apply a stroke painted in any camera (either frame) to a segment."""
        if not isinstance(stroke, Stroke):
            stroke = parse_stroke(stroke)
        stroke = stroke.model_copy(update={"camera": self.in_scene_frame(stroke.camera)})
        return self.segmentation.stroke(segment, stroke)

    def status(self) -> dict:
        """What the scene holds: its data, trained stages, grid, device and memory."""
        data = self.data
        return {
            "source": str(data.source), "space": data.space, "images": len(data.names),
            "width": data.width, "height": data.height,
            "train_views": len(data.train_ids), "test_views": len(data.test_ids),
            "device": str(self.device),
            "colour_steps": self.step, "colour_steps_planned": self.config.train.steps,
            "colour_trained": self.field is not None,
            "features_distilled": self.features is not None,
            "grid": list(self.field.resolution) if self.field is not None else None,
            "checkpoint": str(self.checkpoint_path) if self.checkpoint_path.is_file() else None,
            "segments": list(self._segmentation.segments) if self._segmentation else [],
        }

    # ----- segmentation ---------------------------------------------------------
    @property
    def segmentation(self) -> SegmentationSession:
        """The scene's segments (made on first use; needs the colour and feature stages)."""
        if self._segmentation is None:
            field = self._require_field()
            if self.features is None:
                raise IsrfError("segmentation needs a feature field: train with distill.steps > 0")
            self._segmentation = SegmentationSession(
                field, self.features, RaySpace.of(self.data), self.data.cameras.to(self.device),
                self.config.segment, Photographs(self.data.image_float, self.data.train_ids))
        return self._segmentation

    def mesh(self, segment: str | None = None, config: MeshConfig | None = None):
        """A segment's mesh (None: the whole occupied field) as a trimesh.Trimesh in world
        coordinates with vertex colours (engine/mesh/extract.py)."""
        voxels = None if segment is None else self.segmentation.mask_grid(segment)
        return extract_mesh(self._require_field(), RaySpace.of(self.data), self.data.to_scene,
                            config or self.config.mesh, voxels)

    def mask_image(self, name: str, view: int, photo_assist: bool = False) -> np.ndarray:
        """Segment `name`'s 2D mask [H, W] bool for dataset view `view`: where the segment
        is what the camera sees (its 3D selection rendered); photo_assist: its edges
        snapped to that view's photograph and pixels added by its colours."""
        self._check_view(view)
        session = self.segmentation
        image = self.data.image_float(view) if photo_assist else None
        return session.mask_image(name, session.cameras, view, image=image,
                                  photo_assist=photo_assist)

    def export_segment(self, name: str, out_dir: str | Path, which: ViewSet = "all",
                       progress: bool = True, cancel: threading.Event | None = None,
                       photo_assist: bool = False) -> list[dict]:
        """Write, for every view of a set, the segment's 2D mask (`masks/NNN_<view>.png`,
        as `mask_image` gives it) and its render alone (`renders/NNN_<view>.png`, RGBA,
        alpha 0 outside it). Returns a row per view (file names, mask pixels)."""
        session = self.segmentation
        keep = session.mask_grid(name)   # once for every view; an unknown name fails here
        rows = []
        for i in tqdm(self.view_ids(which), desc=f"export {name}", disable=not progress, unit="view"):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"export cancelled after {len(rows)} views")
            rendered = render_segment_image(self.field, session.space, session.cameras, i, keep)
            image = self.data.image_float(i) if photo_assist else None
            mask = session.mask_from_render(name, rendered, image=image, photo_assist=photo_assist)
            stem = f"{i:03d}_{Path(self.data.names[i]).stem}.png"
            _write_png(Path(out_dir) / "masks" / stem, mask.astype(np.uint8) * 255)
            rgba = torch.cat([rendered["rgb"], rendered["opacity"][..., None]], -1).clamp(0, 1)
            _write_png(Path(out_dir) / "renders" / stem,
                       (rgba * 255).round().byte().cpu().numpy())
            rows.append({"index": i, "name": self.data.names[i], "mask": f"masks/{stem}",
                         "render": f"renders/{stem}", "mask_pixels": int(mask.sum())})
        return rows

    def _feature_coloring(self, ids: list[int]) -> FeatureColoring:
        maps = self.feature_maps.maps[ids]
        return FeatureColoring.fit(maps.reshape(-1, maps.shape[-1]))

    def _render_feature_view(self, i: int, coloring: FeatureColoring, out_dir: Path) -> dict:
        cosines, rendered, target = feature_cosine(
            self.field, self.features, RaySpace.of(self.data), self.data.cameras.to(self.device),
            self.feature_maps, i)
        gap = np.full((rendered.shape[0], 4, 3), 255, np.uint8)
        picture = np.concatenate([coloring.to_rgb(rendered), gap, coloring.to_rgb(target)], 1)
        name = f"{i:03d}_{Path(self.data.names[i]).stem}_features.png"
        _write_png(out_dir / name, picture)
        return {"feature_cosine": cosines["cosine"], "feature_cosine_all": cosines["cosine_all"],
                "feature_file": name}


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values that exist (None where none does)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as temp:
        Image.fromarray(pixels).save(temp, format="PNG")
