"""Request bodies of the API, with their limits. Cameras and strokes are the engine's
own models (engine/segment/strokes.py), so the server and the CLI validate them alike."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.segment.strokes import Refine, StrokeCamera

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_RENDER_PIXELS = 4096 * 4096
Path = Annotated[str, Field(min_length=1, max_length=4096)]
SegmentName = Annotated[str, Field(min_length=1, max_length=64)]
Override = Annotated[str, Field(min_length=3, max_length=1024, pattern=r"^[A-Za-z_.]+=.+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenScene(_Strict):
    """Exactly one of `dataset` (a folder: transforms.json, LLFF or 360) or `checkpoint`."""
    dataset: Path | None = None
    checkpoint: Path | None = None
    config: Path | None = None
    """TOML config for a dataset (default: the built-in defaults)."""
    overrides: list[Override] = Field(default_factory=list, max_length=256)
    """`section.key=value` items, as `--set` takes them (dataset only)."""
    out_dir: Path | None = None
    """Where the dataset's checkpoints go (default: under the server's state dir)."""

    @model_validator(mode="after")
    def _one_source(self) -> "OpenScene":
        if (self.dataset is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of dataset or checkpoint")
        if self.checkpoint is not None and (self.config or self.overrides or self.out_dir):
            raise ValueError("config, overrides and out_dir apply to a dataset, not a checkpoint")
        return self


class Render(_Strict):
    camera: StrokeCamera
    scale: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    """Fraction of the camera's size to render (a quick preview while the view moves)."""
    quality: Literal["full", "preview"] = "full"
    """preview: coarser steps along each ray and one colour per ray (about 39 dB from
    full on the default scene, several times faster): for a view that is moving."""
    mode: Literal["colour", "overlay", "segment"] = "colour"
    segment: SegmentName | None = None
    """The segment `overlay` tints or `segment` shows (required by those modes)."""
    format: Literal["png", "npz"] = "png"
    """png: the RGBA picture; npz: numpy arrays (picture, depth, opacity, visible)."""

    @model_validator(mode="after")
    def _segment_for_mode(self) -> "Render":
        if self.mode != "colour" and self.segment is None:
            raise ValueError(f"mode {self.mode!r} needs a segment")
        return self


class NewSegment(_Strict):
    name: SegmentName
    params: dict[str, float | int] = Field(default_factory=dict, max_length=64)


class ChangeSegment(_Strict):
    name: SegmentName | None = None
    """A new name."""
    params: dict[str, float | int] | None = Field(default=None, max_length=64)
    """Parameters to change for later strokes (SegmentConfig keys)."""


class MeshOptions(_Strict):
    frame: Literal["blender", "scene"] = "blender"
    format: Literal["npz", "ply", "obj", "glb"] = "npz"
    """npz: vertices float32 [V, 3], faces int32 [F, 3], colours uint8 [V, 4]."""
    overrides: dict[str, float | int | bool] = Field(default_factory=dict, max_length=32)
    """[mesh] settings for this mesh (MeshConfig keys: max_faces, smooth, ...)."""


class StartJob(_Strict):
    kind: Literal["train", "features", "distill", "refine", "mesh"]
    resume: bool = False
    """train / distill: continue the scene's checkpoint."""
    segment: SegmentName | None = None
    """refine / mesh: which segment."""
    refine: Refine | None = None
    mesh: MeshOptions | None = None

    @model_validator(mode="after")
    def _segment_when_needed(self) -> "StartJob":
        if self.kind in ("refine", "mesh") and self.segment is None:
            raise ValueError(f"a {self.kind} job needs a segment")
        return self


class SessionFile(_Strict):
    path: Path | None = None
    """Where the segmentation is saved / loaded (default: the scene's file in the state dir)."""
