"""Scene loaders. `load_scene(config.data)` picks the loader and returns `PosedImages`."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import DataConfig
from engine.data.cameras import Cameras
from engine.data.llff import load_llff
from engine.data.posed_images import PosedImages
from engine.data.transforms import load_transforms
from engine.errors import IsrfError

__all__ = ["Cameras", "PosedImages", "load_scene"]


def detect_format(path: Path) -> str:
    if path.suffix == ".json" or any(path.glob("transforms*.json")):
        return "transforms"
    if (path / "poses_bounds.npy").exists():
        return "llff"
    raise IsrfError(f"{path}: cannot tell the scene format (no transforms*.json and no "
                    "poses_bounds.npy); set data.format")


def load_scene(config: DataConfig) -> PosedImages:
    path = Path(config.path).expanduser()
    if not path.exists():
        raise IsrfError(f"{path}: scene not found")
    kind = detect_format(path) if config.format == "auto" else config.format
    if kind == "transforms":
        scene = load_transforms(path, config.test_every, config.background, config.downscale)
    else:
        scene = load_llff(path, config.downscale, config.test_every,
                          unbounded=kind == "360", background=config.background)
    if config.bbox is not None:
        if scene.space != "bounded":
            raise IsrfError(f"data.bbox applies to bounded scenes only, not {kind}")
        box = torch.tensor(config.bbox, dtype=torch.float32)
        if box.shape != (2, 3) or (box[1] <= box[0]).any():
            raise IsrfError("data.bbox must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max")
        scene.bbox = box
    return scene
