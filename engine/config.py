"""Typed configuration: dataclasses validated by pydantic, loaded from TOML files.

A config file has up to seven tables, `[data]`, `[field]`, `[train]`, `[features]`,
`[distill]`, `[segment]` and `[mesh]`; every key is optional and falls back to the default written here. Unknown keys and values of the
wrong type are rejected with a message that names the key. `--set section.key=value`
overrides are applied to the TOML data before validation, so they are checked the same
way (the value is parsed as a TOML value: `train.steps=500`, `data.format="llff"`).
"""

from __future__ import annotations

import dataclasses
import tomllib
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from engine.errors import IsrfError

# Unknown keys are errors. Fields are strict (no "5" -> 5 coercion), except that an int is
# accepted where a float is expected; dataclass-level strict mode would refuse dict input.
_STRICT = ConfigDict(extra="forbid")
Str = Annotated[str, Field(strict=True)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, strict=True)]
Fraction = Annotated[float, Field(gt=0, lt=1, strict=True)]
OfLongSide = Annotated[float, Field(ge=0, le=0.5, strict=True)]
"""A length in an image as a fraction of its long side (0: off)."""


@dataclass(config=_STRICT)
class DataConfig:
    path: Str = "scenes/default"
    """Scene folder (LLFF / 360: holds poses_bounds.npy; NeRF: holds transforms*.json) or a
    transforms .json file. Relative paths are taken from the current directory."""
    format: Literal["auto", "llff", "360", "transforms"] = "auto"
    """`llff`: forward-facing capture, trained in NDC. `360`: LLFF poses of an unbounded
    scene, trained in a contracted space. `transforms`: NeRF / instant-ngp json, bounded.
    `auto`: transforms if a transforms json exists, else llff; a forward-facing capture
    posed by `isrf pose` (its transforms.json says `camera_layout`) is trained in NDC."""
    downscale: PositiveInt = 1
    """Train on photos 1 / downscale the size. LLFF / 360: read `images_<downscale>/`, made
    from `images/` if missing; transforms.json: copies in `<image folder>_<downscale>/`,
    made once and reused (engine/data/downscale.py). Intrinsics are scaled to match."""
    test_every: NonNegativeInt = 8
    """Hold out every n-th image (index % n == 0) for testing; 0 holds out none. Ignored
    when the scene has its own test split (transforms_test.json)."""
    background: Literal["auto", "white", "black", "environment"] = "auto"
    """white | black: the colour that transparent pixels of RGBA images are composited
    onto, and that the field renders where rays see nothing (bounded scenes).
    environment: the photos show a room or a sky behind the scene box; the field learns
    its colour by direction (engine/field/environment.py; images must be opaque).
    auto: environment for a 360 capture posed by `isrf pose`, white for other
    transforms.json scenes, black for LLFF and forward-facing captures (NDC)."""
    bbox: list[list[Annotated[float, Field(strict=True)]]] | None = None
    """Bounded scenes: override the scene box [[xmin,ymin,zmin],[xmax,ymax,zmax]] (world)."""

    @field_validator("format", mode="before")
    @classmethod
    def _number_as_name(cls, value):
        # `--set data.format=360` parses as the TOML integer 360; the format is the name "360".
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass(config=_STRICT)
class FieldConfig:
    num_voxels: Annotated[int, Field(ge=8**3, strict=True)] = 128**3
    """Voxel count of the density grid at the end of training (voxels are cubes)."""
    num_voxels_start: Annotated[int, Field(ge=8**3, strict=True)] = 32**3
    """Voxel count before the first progressive upscale."""
    upscale_steps: list[PositiveInt] = dataclasses.field(default_factory=lambda: [300, 600, 900])
    """Steps at which the grids are upscaled (geometrically from start to end); at each,
    the box is also tightened around what is occupied."""
    alpha_init: Fraction = 1e-4
    """Opacity of one final-resolution voxel step at initialisation (low: empty space)."""
    stepsize: PositiveFloat = 0.5
    """Ray-marching step, in voxels of the current grid."""
    color_rank: PositiveInt = 16
    """Components per plane/line pair of the VM (TensoRF) colour-feature grid."""
    color_features: PositiveInt = 27
    """Colour-feature channels fed to the MLP (after the VM basis matrix)."""
    mlp_width: PositiveInt = 64
    """Hidden width of the colour MLP (two hidden layers)."""
    viewdir_freqs: NonNegativeInt = 4
    """Positional-encoding frequencies of the view direction."""
    weight_threshold: NonNegativeFloat = 1e-4
    """Samples whose rendering weight is below this skip the colour MLP (speed)."""
    occupancy_threshold: Fraction = 1e-3
    """A voxel is occupied when its one-step opacity exceeds this; empty voxels are skipped."""
    box_padding: NonNegativeInt = 3
    """Voxels of padding kept around the occupied region when the box is tightened."""
    environment_width: Annotated[int, Field(ge=8, strict=True)] = 256
    """data.background = "environment": final width of the learnt equirectangular texture
    (height half of it; 256 is 1.4 degrees a texel). It starts 2**len(upscale_steps)
    times narrower and doubles at each upscale (engine/field/environment.py)."""
    unbounded_samples: PositiveInt = 24
    """360 scenes: samples in the contracted outer shell of every ray."""

    def __post_init__(self):
        if self.num_voxels_start > self.num_voxels:
            raise ValueError("num_voxels_start must not exceed num_voxels")
        if len(set(self.upscale_steps)) != len(self.upscale_steps):
            raise ValueError("upscale_steps must not repeat a step")


@dataclass(config=_STRICT)
class TrainConfig:
    steps: PositiveInt = 1500
    """Optimisation steps."""
    batch_rays: PositiveInt = 4096
    """Rays per step, drawn at random from all training pixels."""
    lr_density: PositiveFloat = 0.1
    lr_color_grid: PositiveFloat = 0.02
    lr_mlp: PositiveFloat = 1e-3
    lr_environment: PositiveFloat = 0.1
    """data.background = "environment": the learnt environment's rate (density's: each
    texel is seen by few rays of a batch; at 1e-3 the room scene's environment was still
    dark after 200 steps and density grew a fog to explain the room instead)."""
    lr_decay: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.1
    """Learning rates decay exponentially to this fraction of their start by the last step."""
    weight_entropy: NonNegativeFloat = 0.01
    """Binary-entropy loss on each ray's final transmittance (pushes rays to all-or-nothing)."""
    weight_sample_rgb: NonNegativeFloat = 0.1
    """Per-sample colour loss (DVGO's rgbper): every sample's colour is pulled towards its
    ray's target, weighted by its rendering weight. Keeps colours from collapsing while
    density is still low."""
    weight_distortion: NonNegativeFloat = 0.0
    """Mip-NeRF 360's distortion loss on each ray's weights (positions in final-grid
    voxels): gathers each ray's weight into a thin layer (engine/train/losses.py). Off by
    default: on the default scene it cost PSNR and mesh accuracy (1e-4: -1.3 dB;
    docs/segmentation_measurements.md, "Meshes against the true surfaces")."""
    weight_tv_density: NonNegativeFloat = 0.0
    """Total-variation loss on the density grid (useful for sparse forward-facing views)."""
    tv_until: NonNegativeInt = 1_000_000
    """Apply the TV loss only before this step."""
    occupancy_every: PositiveInt = 100
    """Rebuild the occupancy mask (empty-space skipping) every n steps, from the first
    upscale on (or from step 200 when there is none)."""
    eval_every: NonNegativeInt = 500
    """Test PSNR every n steps (0: only at the end) on up to `eval_views` test views."""
    eval_views: PositiveInt = 2
    checkpoint_every: NonNegativeInt = 500
    """Write a checkpoint every n steps (and always at the end or on cancel)."""
    seed: NonNegativeInt = 0
    out_dir: Str = "runs/default"
    """Where checkpoints and renders go."""


Bool = Annotated[bool, Field(strict=True)]
Backbone = Literal["efficientnet_lite0", "dino_vitb8", "dino_vits8", "dinov2_vits14"]


@dataclass(config=_STRICT)
class FeaturesConfig:
    backbone: Backbone = "efficientnet_lite0"
    """2D feature extractor. `dino_vitb8` is ISRF's; `efficientnet_lite0` ships with the
    engine and works offline (the DINO models need their weights: see `weights`)."""
    weights: Str | None = None
    """Weights file for the backbone (.safetensors or .pth; timm's or the authors' release).
    None: the packaged file (efficientnet_lite0) or the Hugging Face hub cache."""
    download: Bool = False
    """Download missing DINO weights from the Hugging Face hub (needs a connection)."""
    input_size: NonNegativeInt = 448
    """Long side, in pixels, of the images fed to the backbone (rounded to the backbone's
    patch multiple); 0 keeps the images' own size."""
    scales: list[PositiveFloat] = dataclasses.field(default_factory=lambda: [1.0])
    """Backbone passes per image, at these multiples of `input_size`; their features are
    averaged (on the 1.0 pass's grid). Several scales make features more alike across views."""
    flip: Bool = False
    """Also run every pass on the mirrored image and average (consistency, 2x the time)."""
    dims: PositiveInt = 64
    """Feature channels after PCA (fitted over all patches of all training images)."""
    batch_size: PositiveInt = 4
    """Images per backbone call."""
    guided_radius: NonNegativeFloat = 1.0
    """Edge-aware upsampling (engine/features/guided.py): the maps are upsampled to the
    image's size and guided-filtered with the image, in windows of this radius in pixels of
    the backbone's map, so feature edges follow colour edges where objects meet
    (0: off, bilinear maps as in ISRF)."""
    guided_eps: PositiveFloat = 1e-4
    """The guided filter's regulariser (squared colour units, colours in [0, 1]): smaller
    values follow weaker colour edges."""
    guided_max_side: PositiveInt = 512
    """Long side of the guided maps at most (they are float16 [N, H, W, D] in memory)."""
    cache_dir: Str | None = None
    """Where extracted features are cached. None: `.isrf_cache/` in the scene folder, or
    ~/.cache/isrf/ when that folder is read-only."""


@dataclass(config=_STRICT)
class DistillConfig:
    steps: NonNegativeInt = 1000
    """Feature-distillation steps after the colour stage (0: no feature field)."""
    batch_rays: PositiveInt = 4096
    """Rays per step, drawn at random from all training pixels."""
    rank: PositiveInt = 16
    """Components per plane/line pair of the VM feature grid (its memory: 3 x rank x n^2)."""
    samples_per_ray: NonNegativeInt = 8
    """Feature samples per ray in training, drawn by rendering weight (0: every sample
    above the weight threshold; slower, same result in expectation)."""
    lr_grid: PositiveFloat = 0.02
    lr_basis: PositiveFloat = 1e-3
    lr_decay: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.1
    """Learning rates decay exponentially to this fraction of their start by the last step."""
    checkpoint_every: NonNegativeInt = 500
    """Write a checkpoint every n steps (and always at the end or on cancel)."""


@dataclass(config=_STRICT)
class SegmentConfig:
    """Segmentation from strokes (engine/segment/). These are the defaults of every new
    segment; a segment, and any single stroke, can override each of them but
    colour_weight. Distances are squared L2 between L2-normalised features (0: identical,
    2: orthogonal, 4: opposite)."""
    clusters: PositiveInt = 11
    """k of the k-means over a stroke's rendered features (capped by its pixel count)."""
    seed_distance: Annotated[float, Field(gt=0, le=4, strict=True)] = 0.15
    """A voxel is a seed when its feature is within this of a stroke cluster's centre
    (ISRF uses ~0.4 with DINO; the offline backbone's features are closer together,
    docs/segmentation.md)."""
    grow_distance: Annotated[float, Field(gt=0, le=4, strict=True)] = 0.3
    """Region growing never takes a voxel further than this from every cluster centre."""
    scene_clusters: NonNegativeInt = 32
    """Background model: k of a k-means over all voxel features; a voxel nearer to one of
    these centres that is unlike the stroke than to the stroke is never selected
    (0: off, as in ISRF)."""
    colour_weight: Annotated[float, Field(ge=0, le=2, strict=True)] = 0.3
    """Beyond ISRF: the field's colour joins each voxel's and stroke pixel's feature at
    this weight (engine/segment/colour.py; 0: features alone, as ISRF). Fixed for a
    session, not per segment or stroke: the voxels' features are built with it."""
    sigma_f: Annotated[float, Field(ge=1e-3, strict=True)] = 0.1
    """Feature bandwidth of the bilateral weights exp(-|F(q) - F(p)|^2 / sigma_f); at
    least 0.001 (features lie within squared distance 4 of each other, and much smaller
    bandwidths overflow the weights' float32 arithmetic)."""
    sigma_d: PositiveFloat = 1.0
    """Distance bandwidth of the bilateral weights exp(-|q - p|_1 / sigma_d) (voxels)."""
    join: Fraction = 0.1
    """A voxel joins when the bilateral-weighted share of its neighbours already in the
    region exceeds this."""
    max_growth: NonNegativeInt = 512
    """Bound on region-growing rounds (each adds at most one voxel layer); 0: seeds only."""
    hit_radius: NonNegativeInt = 2
    """Seeds must be connected to a voxel within this many voxels of a point the stroke's
    rays hit, so a look-alike object elsewhere is not selected."""
    mask_opacity: Fraction = 0.45
    """A pixel is in a segment's 2D mask when the segment's rendered opacity exceeds this
    (0.45 rather than 0.5: the edge filter below lowers thin parts' peaks a little)."""
    mask_edge_radius: OfLongSide = 0.03
    """Photo-assisted 2D masks: before the threshold, the segment's rendered share is
    guided-filtered with the camera's image (the photograph for dataset views, else the
    render) in windows of this radius, a fraction of the image's long side (0.03: 6 px
    of a 200-px image), so the mask's edges follow the image's (engine/segment/
    mask_edges.py); 0: off."""
    mask_edge_eps: PositiveFloat = 1e-4
    """Regulariser of that filter (squared colour units): smaller follows weaker edges."""
    mask_grabcut_band: OfLongSide = 0.025
    """Photo-assisted 2D masks: after the threshold, pixels up to this far outside the
    mask (a fraction of the image's long side; 0.025: 5 px of a 200-px image) join it where
    GrabCut, with colour models of the image started from the mask, gives them to it
    (engine/segment/mask_edges.py); 0: off."""


@dataclass(config=_STRICT)
class MeshConfig:
    """Meshes of segments by marching cubes (engine/mesh/)."""
    level: Fraction = 0.5
    """Iso-level on the opacity of `thickness` voxels of material, 1 - exp(-sigma * thickness)."""
    thickness: PositiveFloat = 4.0
    """Voxels of material the level refers to. Fields trained on few or small images have
    soft surfaces (each voxel only partly opaque, several together opaque); 4 finds their
    surface, and a sharp surface sits at its density jump whatever the value."""
    smooth: NonNegativeFloat = 1.0
    """Gaussian smoothing of the segment's voxel mask before it multiplies the opacity
    (sigma, voxels; 0: none): smooth cuts where the segment ends inside material."""
    largest_component: Bool = True
    """Keep only the largest connected piece of the material, then of its surface (drops
    floaters, and slivers that touch the rest only at a voxel's corner)."""
    max_faces: NonNegativeInt = 200_000
    """Face budget: larger meshes are decimated (quadric error) down to it; 0: no limit."""
    fill_cavities: Bool = True
    """Fill the empty pockets the material encloses (a field's objects are often hollow
    shells): the mesh is the outside surface only, with no shells hidden inside it."""
    surface_smoothing: NonNegativeInt = 10
    """Iterations of Taubin smoothing of the mesh (it does not shrink it): evens out the
    voxel-scale ripples of a field's surfaces; 0: none."""
    frame: Literal["capture", "scene"] = "capture"
    """`capture`: the world frame of the input poses (transforms.json / poses_bounds.npy);
    `scene`: the engine's normalised frame the cameras are expressed in."""


@dataclass(config=_STRICT)
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    features: FeaturesConfig = dataclasses.field(default_factory=FeaturesConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    segment: SegmentConfig = dataclasses.field(default_factory=SegmentConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)


_CONFIG_ADAPTER = TypeAdapter(Config)


def _describe(error: ValidationError, source: str, overridden: set[str] = frozenset()) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in overridden):
        source = "--set"
    message = first["msg"]
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {key}: {message}{more}"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise IsrfError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise IsrfError(f"--set {item!r}: the key must look like section.key (e.g. train.steps)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string: --set data.path=scenes/fern
    return parts, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw (TOML) dict with `section.key=value` items applied."""
    raw = {section: dict(values) if isinstance(values, dict) else values
           for section, values in raw.items()}
    for item in overrides:
        parts, value = _parse_override(item)
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise IsrfError(f"--set {item!r}: {part} is not a table")
        node[parts[-1]] = value
    return raw


PIXEL_LENGTHS = ("mask_edge_radius", "mask_grabcut_band")
"""Segment settings saved as whole pixels before 2026-12-07, fractions of the image's long
side since (`upgrade_saved_segment`)."""
PIXELS_CHOSEN_AT = 200   # the long side of the default scene's images, which they were chosen for


def upgrade_saved_segment(segment: dict, source: str) -> dict:
    """Segment settings saved by an earlier engine (a checkpoint's config, a session's
    segment parameters) in today's terms: a pixel length (a value above 0.5) becomes that
    many pixels of a 200-px image, with a warning, so nothing saved stops loading."""
    upgraded, changes = dict(segment), []
    for key in PIXEL_LENGTHS:
        value = upgraded.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0.5:
            upgraded[key] = min(0.5, value / PIXELS_CHOSEN_AT)
            changes.append(f"segment.{key} = {value} px -> {upgraded[key]:g}")
    if changes:
        warnings.warn(f"{source}: saved by an earlier engine in pixels, read as fractions of "
                      f"the image's long side: {', '.join(changes)}")
    return upgraded


def config_from_saved(raw: dict, source: str) -> Config:
    """`config_from_dict` for a config an engine saved (a checkpoint's): settings whose
    meaning changed since are upgraded first (`upgrade_saved_segment`)."""
    if isinstance(raw.get("segment"), dict):
        raw = {**raw, "segment": upgrade_saved_segment(raw["segment"], source)}
    return config_from_dict(raw, source)


def config_from_dict(raw: dict, source: str = "config", overridden: set[str] = frozenset()) -> Config:
    """Validate a raw dict; errors name `source`, or `--set` for keys in `overridden`."""
    try:
        return _CONFIG_ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise IsrfError(_describe(error, source, overridden)) from None


def _shipped_config(name: str, given: Path) -> Path:
    from engine.resources import shipped

    try:
        found = shipped("configs", name)
    except ModuleNotFoundError:   # a checkout without the file: no packaged copy either
        return given
    return found if found.is_file() else given


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a TOML config (None: all defaults) and apply `--set` overrides. A bare name
    that is not a file (`capture_360`) names a config the engine ships (configs/)."""
    raw: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file() and path.parent == Path(".") and path.suffix in ("", ".toml"):
            path = _shipped_config(path.with_suffix(".toml").name, path)
        source = str(path)
        if not path.is_file():
            raise IsrfError(f"{path}: config file not found")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise IsrfError(f"{path}: not valid TOML: {error}") from None
    overridden = {".".join(_parse_override(item)[0]) for item in overrides}
    return config_from_dict(apply_overrides(raw, list(overrides)), source, overridden)


def config_to_dict(config: Config) -> dict:
    return _CONFIG_ADAPTER.dump_python(config)
