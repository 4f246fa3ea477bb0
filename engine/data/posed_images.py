"""The loaded scene data every loader returns: images, cameras, split, ray space."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from engine.data.cameras import Cameras
from engine.errors import IsrfError

SpaceKind = Literal["bounded", "ndc", "contracted"]


@dataclass
class PosedImages:
    images: torch.Tensor            # [N, H, W, 3] uint8
    cameras: Cameras                # N cameras, OpenCV convention (see cameras.py)
    names: list[str]                # image file names, in the same order
    train_ids: list[int]
    test_ids: list[int]
    space: SpaceKind
    """bounded: the field lives in `bbox` (world units). ndc: forward-facing, rays are
    mapped to normalised device coordinates of the reference camera. contracted:
    unbounded, world points outside the unit cube are contracted into a shell."""
    background: tuple[float, float, float] | None
    """Colour behind everything (RGB in [0, 1]); None: learnt by direction (`Environment`)."""
    near: float = 0.0
    """Rays start no closer than this (world units; ndc: the NDC near plane)."""
    bbox: torch.Tensor | None = None
    """bounded: [2, 3] world box min/max that holds the scene."""
    ndc_intrinsics: tuple[float, float, float, float] | None = None
    """ndc: fx, fy, W, H of the reference camera that defines NDC space."""
    source: Path = field(default_factory=Path)
    files: list[Path] = field(default_factory=list)
    """The image files read, in the same order (absolute paths)."""
    to_scene: torch.Tensor = field(default_factory=lambda: torch.eye(4))
    """[4, 4] similarity transform from the capture's original world coordinates to the
    normalised coordinates the cameras are expressed in (identity for bounded transforms.json)."""
    model_note: str = ""
    """Why the space and background were chosen, when they came from the scene's camera
    layout (`engine.data.choose_model`); printed in the summary."""

    @property
    def height(self) -> int:
        return self.cameras.height

    @property
    def width(self) -> int:
        return self.cameras.width

    def image_float(self, index: int) -> torch.Tensor:
        """Image `index` as float32 [H, W, 3] in [0, 1]."""
        return self.images[index].float() / 255

    def summary(self) -> str:
        return (f"{self.source}: {len(self.names)} images {self.width}x{self.height}, "
                f"{len(self.train_ids)} train / {len(self.test_ids)} test, space={self.space}"
                + (f"; {self.model_note}" if self.model_note else ""))


def holdout_split(count: int, test_every: int) -> tuple[list[int], list[int]]:
    """Every `test_every`-th image (index % n == 0) is a test image; 0 holds none out."""
    test = [i for i in range(count) if test_every and i % test_every == 0]
    train = [i for i in range(count) if i not in set(test)]
    if not train:
        raise IsrfError(f"test_every={test_every} holds out all {count} images; none left to train on")
    return train, test
