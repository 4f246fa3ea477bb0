"""`Scene`: one loaded scene and every operation on it.

The CLI (and later the loopback server and the Blender add-on) are thin layers over
these methods. A Scene owns its config, its posed images (loaded on first use) and its
radiance field (trained, or restored from a checkpoint).
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
from engine.config import Config, config_from_dict
from engine.data import PosedImages, load_scene
from engine.errors import Cancelled, IsrfError
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_image
from engine.metrics import image_metrics
from engine.train.checkpoint import load_checkpoint
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
        self.field: RadianceField | None = None
        self.step = 0

    # ----- loading --------------------------------------------------------------
    @property
    def data(self) -> PosedImages:
        if self._data is None:
            self._data = load_scene(self.config.data)
        return self._data

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None) -> "Scene":
        content = load_checkpoint(path)
        scene = cls(config_from_dict(content["config"], f"{path} (config)"), device)
        scene.field = RadianceField.from_state_dict(scene.config.field, content["field"]).to(scene.device)
        scene.step = int(content["step"])
        return scene

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
            self.field = RadianceField.from_state_dict(self.config.field, content["field"])
            state = dict(start_step=content["step"], optimizer_state=content["optimizer"],
                         history=content["history"], elapsed=content["elapsed"])
            torch.set_rng_state(content["rng"])
        else:
            torch.manual_seed(self.config.train.seed)
            self.field = field_for(self.data, self.config)
        trainer = Trainer(self.data, self.config, self.field, self.device, **state)
        report = trainer.run(progress=progress, cancel=cancel, final_eval=final_eval)
        self.step = trainer.step
        return report

    # ----- rendering ------------------------------------------------------------
    def view_ids(self, which: ViewSet) -> list[int]:
        data = self.data
        return {"test": data.test_ids, "train": data.train_ids,
                "all": list(range(len(data.names)))}[which]

    def render(self, cam_id: int) -> dict[str, torch.Tensor]:
        """Render dataset view `cam_id`: rgb [H, W, 3], depth [H, W], opacity [H, W]."""
        field = self._require_field()
        if not 0 <= cam_id < len(self.data.names):
            raise IsrfError(f"view {cam_id} does not exist (the scene has {len(self.data.names)})")
        return render_image(field, RaySpace.of(self.data), self.data.cameras.to(self.device), cam_id)

    def render_views(self, which: ViewSet, out_dir: str | Path, progress: bool = True,
                     cancel: threading.Event | None = None) -> dict:
        """Render a view set to PNGs and write metrics.json (PSNR / SSIM per view)."""
        out_dir = Path(out_dir)
        ids = self.view_ids(which)
        if not ids:
            raise IsrfError(f"the scene has no {which} views")
        rows = []
        for i in tqdm(ids, desc=f"render {which}", disable=not progress, unit="view"):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"rendering cancelled after {len(rows)} of {len(ids)} views")
            rendered = self.render(i)["rgb"].clamp(0, 1).cpu().numpy()
            name = f"{i:03d}_{Path(self.data.names[i]).stem}.png"
            with atomic_path(out_dir / name) as temp:
                Image.fromarray(np.round(rendered * 255).astype(np.uint8)).save(temp, format="PNG")
            target = self.data.image_float(i).numpy()
            split = "test" if i in self.data.test_ids else "train"
            rows.append({"index": i, "name": self.data.names[i], "split": split, "file": name,
                         **image_metrics(rendered, target)})
        metrics = {
            "scene": str(self.data.source), "views": which, "step": self.step,
            "mean": {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "ssim")},
            "per_view": rows,
        }
        write_json(out_dir / "metrics.json", metrics)
        return metrics
