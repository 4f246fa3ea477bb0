"""Scene loaders. `load_scene(config.data)` picks the loader and returns `PosedImages`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.config import DataConfig
from engine.data.cameras import Cameras
from engine.data.llff import load_llff
from engine.data.posed_images import PosedImages
from engine.data.transforms import capture_layout, load_transforms
from engine.errors import IsrfError

__all__ = ["Cameras", "PosedImages", "SceneModel", "choose_model", "load_scene"]


@dataclass(frozen=True)
class SceneModel:
    """How a scene is modelled: `format` (transforms | llff | 360), `ndc` (a transforms
    scene trained in NDC), `background` (white | black | environment), and `note`, which
    says why when it was chosen from the scene rather than from the config."""
    format: str
    ndc: bool
    background: str
    note: str = ""


def choose_model(config: DataConfig, path: Path) -> SceneModel:
    """data.format and data.background as set, or for "auto" what suits the scene. A
    capture posed by `isrf pose` (its transforms.json has `camera_layout`): forward-facing
    is trained in NDC, as LLFF captures are (everything to infinity in the grid); 360 in
    the box of the sparse points with a learnt environment for the room around it, so
    that the object gets the grid's resolution (docs/capture.md). Other transforms.json
    scenes are bounded, their RGBA photos composited on white; LLFF on black (NDC rays
    end at infinity, where little is left to colour)."""
    kind = detect_format(path) if config.format == "auto" else config.format
    layout = capture_layout(path) if kind == "transforms" else None
    ndc = config.format == "auto" and layout == "forward-facing"
    if config.background != "auto":
        background = config.background
    elif layout == "360":
        background = "environment"
    else:
        background = "white" if kind == "transforms" and not ndc else "black"
    if layout is None or (config.format != "auto" and config.background != "auto"):
        return SceneModel(kind, ndc, background)
    space = "NDC" if ndc else "the box of the sparse points"
    return SceneModel(kind, ndc, background,
                      f"camera layout {layout} (from isrf pose): {space}, background {background}")


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
    model = choose_model(config, path)
    if model.format == "transforms":
        scene = load_transforms(path, config.test_every, model.background, config.downscale,
                                ndc=model.ndc)
    else:
        scene = load_llff(path, config.downscale, config.test_every,
                          unbounded=model.format == "360", background=model.background)
    scene.model_note = model.note
    if config.bbox is not None:
        if scene.space != "bounded":
            raise IsrfError(f"data.bbox applies to bounded scenes only, not {scene.space}")
        box = torch.tensor(config.bbox, dtype=torch.float32)
        if box.shape != (2, 3) or (box[1] <= box[0]).any():
            raise IsrfError("data.bbox must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max")
        scene.bbox = box
    return scene
