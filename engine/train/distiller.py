"""The feature stage: distil 2D backbone features into a `FeatureField`.

Runs after the colour stage. The radiance field is frozen: it only supplies the ray
weights, so distillation cannot disturb the geometry or the colours, and each step costs
one density pass (no gradient) plus the feature grid on the visible samples. The loss is
the MSE between rendered features and the 2D features at the same pixels (bilinear in the
feature map). Checkpoints hold the colour stage unchanged plus a `features` section.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.config import Config
from engine.data.posed_images import PosedImages
from engine.features.maps import FeatureMaps
from engine.field.feature_field import FeatureField
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_feature_image, render_feature_rays
from engine.train.loop import StepLoop, decay_rates, decaying_adam, random_pixels


@dataclass
class DistillReport:
    steps: int
    seconds: float
    """Time spent in optimisation steps (evaluation excluded)."""
    test_cosine: float | None
    """Mean cosine similarity of rendered and 2D features over the held-out views' pixels
    that show the scene (see `feature_cosine`)."""
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


SCENE_OPACITY = 0.5
"""Pixels whose rendered opacity reaches this show the scene; the others see only the
background, where the field holds no features to compare."""


@torch.no_grad()
def feature_cosine(field: RadianceField, features: FeatureField, space: RaySpace, cameras,
                   maps: FeatureMaps, cam_id: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Cosine similarity of view `cam_id`'s rendered features and its 2D features, and both
    images [H, W, D].

    `cosine`: mean over the pixels that show the scene (rendered opacity >= 0.5): the
    number the distillation is judged by. `cosine_all`: over every pixel; lower in scenes
    with empty background, whose 2D features are halos of context that change from view to
    view and that no 3D field can hold."""
    out = render_feature_image(field, features, space, cameras, cam_id)
    rendered = out["features"]
    target = maps.image(cam_id).to(rendered.device)
    similarity = F.cosine_similarity(rendered, target, dim=-1)
    scene_pixels = out["opacity"] >= SCENE_OPACITY
    shown = float(similarity[scene_pixels].mean()) if scene_pixels.any() else None
    return {"cosine": shown, "cosine_all": float(similarity.mean())}, rendered, target


class Distiller(StepLoop):
    name = "distill"

    def __init__(self, scene: PosedImages, config: Config, field: RadianceField,
                 features: FeatureField, maps: FeatureMaps, device: torch.device,
                 save: Callable[[dict], Path], start_step: int = 0,
                 optimizer_state: dict | None = None, history: list[dict] | None = None,
                 elapsed: float = 0.0):
        self.scene, self.config, self.device = scene, config, device
        self.field = field.to(device)  # only read (render_feature_rays takes no gradient)
        self.features = features.to(device)
        self.maps = maps.to(device)
        self.space = RaySpace.of(scene)
        self.cameras = scene.cameras.to(device)
        self.train_ids = torch.tensor(scene.train_ids, device=device)
        self.step, self.total_steps = start_step, config.distill.steps
        self.history, self.elapsed = list(history or []), elapsed
        d = config.distill
        self.optimizer = decaying_adam(self.features.parameter_groups(d.lr_grid, d.lr_basis))
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self._save = save

    def train_step(self) -> dict[str, str]:
        d = self.config.distill
        decay_rates(self.optimizer, d.lr_decay, self.step, d.steps)
        cam, cols, rows = random_pixels(self.train_ids, self.scene.height, self.scene.width,
                                        d.batch_rays)
        origins, dirs = self.cameras.rays(cam, cols, rows)
        target = self.maps.sample(cam, cols, rows)                               # [R, D]
        rendered = render_feature_rays(self.field, self.features, self.space, origins, dirs,
                                       jitter=True, samples_per_ray=d.samples_per_ray)["features"]
        loss = F.mse_loss(rendered, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        cosine = F.cosine_similarity(rendered.detach(), target, dim=-1).mean()
        return {"cos": f"{float(cosine):.3f}"}

    def after_step(self, bar: tqdm) -> None:
        every = self.config.distill.checkpoint_every
        if every and self.step % every == 0 and self.step < self.total_steps:
            self.save()

    def checkpoint_section(self) -> dict:
        return dict(step=self.step, field=self.features.state_dict(),
                    optimizer=self.optimizer.state_dict(), history=self.history,
                    elapsed=self.elapsed, maps_key=self.maps.key)

    def save(self) -> Path:
        return self._save(self.checkpoint_section())

    def evaluate(self, ids: list[int] | None = None) -> float | None:
        """Mean held-out cosine similarity (all test views unless `ids`); None without test
        views or when none of their pixels shows the scene."""
        ids = self.scene.test_ids if ids is None else ids
        if not ids:
            return None
        values = [feature_cosine(self.field, self.features, self.space, self.cameras, self.maps,
                                 i)[0]["cosine"] for i in ids]
        values = [v for v in values if v is not None]
        if not values:
            return None
        result = sum(values) / len(values)
        self.history.append({"step": self.step, "test_cosine": result, "seconds": self.elapsed})
        return result

    def run(self, progress: bool = True, cancel: threading.Event | None = None,
            final_eval: bool = True) -> DistillReport:
        self.run_steps(progress, cancel)
        final = self.evaluate() if final_eval else None
        path = self.save()
        return DistillReport(self.step, self.elapsed, final, self.history, path)
