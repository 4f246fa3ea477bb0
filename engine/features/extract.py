"""Extract a scene's 2D features once: backbone -> PCA -> L2 norm -> guided upsampling,
cached on disk.

The cache file is named after a digest of everything the features depend on (backbone,
weights file contents, the images and the training split, the input sizes, flip, D, the
guided upsampling and the extraction code's version), so a stale file is never read: any
change gives a new name and a fresh extraction. Older files of the same backbone in that
folder are deleted after a new one is written, so the cache holds one set per backbone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine import work
from engine.atomic import atomic_path
from engine.config import FeaturesConfig
from engine.data.posed_images import PosedImages
from engine.errors import Cancelled, IsrfError
from engine.features.backbones import BACKBONES, EFFICIENTNET_STAGES, Backbone
from engine.features.guided import guided_map_size, guided_radius_pixels, guided_upsample
from engine.features.maps import FeatureMaps
from engine.features.pca import StreamingPca, project
from engine.features.weights import file_digest, load_backbone, resolve_weights

FEATURES_VERSION = 1
"""Bump when extraction changes in a way that makes old caches wrong."""
CACHE_FORMAT = "isrf-features"


def backbone_input_size(height: int, width: int, long_side: int, multiple: int) -> tuple[int, int]:
    """(H', W') fed to the backbone: long side scaled to `long_side` (0: unchanged),
    each rounded to the nearest multiple of `multiple` (at least one multiple)."""
    scale = long_side / max(height, width) if long_side else 1.0
    return tuple(max(multiple, int(round(n * scale / multiple)) * multiple) for n in (height, width))


def images_digest(data: PosedImages) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([data.names, data.train_ids]).encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir(data: PosedImages) -> Path:
    """`.isrf_cache/` in the scene folder, or under ~/.cache/isrf when it is read-only."""
    folder = data.source if data.source.is_dir() else data.source.parent
    if os.access(folder, os.W_OK):
        return folder / ".isrf_cache"
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "isrf" / f"{folder.name}-{tag}"


def pass_sizes(data: PosedImages, config: FeaturesConfig) -> list[tuple[int, int]]:
    """Backbone input size (H', W') of each scale pass; the first is the 1.0 (or nearest) one."""
    multiple = BACKBONES[config.backbone].multiple
    long_side = config.input_size or max(data.height, data.width)
    scales = sorted(config.scales, key=lambda s: abs(s - 1))
    return [backbone_input_size(data.height, data.width, int(round(long_side * s)), multiple)
            for s in scales]


def cache_key(data: PosedImages, config: FeaturesConfig, weights: Path) -> dict:
    stages = list(EFFICIENTNET_STAGES) if BACKBONES[config.backbone].kind == "efficientnet" else None
    return {"version": FEATURES_VERSION, "backbone": config.backbone, "stages": stages,
            "weights": f"sha256:{file_digest(weights)}", "images": images_digest(data),
            "input_sizes": [list(size) for size in pass_sizes(data, config)],
            "flip": config.flip, "dims": config.dims, "guided": _guided_key(config)}


def _guided_key(config: FeaturesConfig) -> list | None:
    if not config.guided_radius:
        return None
    return [config.guided_radius, config.guided_eps, config.guided_max_side]


def _cache_file(folder: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"features-{key['backbone']}-{digest}.pt"


def _read_cache(path: Path, key: dict) -> FeatureMaps | None:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable (damaged, older torch): extract again
        return None
    if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT or content.get("key") != key:
        return None
    return FeatureMaps(content["maps"], tuple(content["image_size"]), content["pca_mean"],
                       content["pca_components"], key, path)


def _write_cache(path: Path, features: FeatureMaps) -> None:
    with atomic_path(path) as temp:
        torch.save({"format": CACHE_FORMAT, "key": features.key, "maps": features.maps,
                    "image_size": list(features.image_size), "pca_mean": features.pca_mean,
                    "pca_components": features.pca_components}, temp)
    for old in path.parent.glob(f"features-{features.key['backbone']}-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)


def _averaged_passes(backbone: Backbone, images: torch.Tensor, sizes: list[tuple[int, int]],
                     flip: bool) -> torch.Tensor:
    """images [B, 3, H, W] -> features [B, C, h, w] on the first size's grid, averaged over
    every size (and the mirrored image when `flip`)."""
    grid = (sizes[0][0] // backbone.stride, sizes[0][1] // backbone.stride)
    total = 0
    for size in sizes:
        batch = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
        # fp16 on CUDA (the backbones are inference-only); full precision on the CPU.
        with torch.autocast("cuda", dtype=torch.float16, enabled=images.device.type == "cuda"):
            out = backbone(batch).float()
            if flip:
                out = out + backbone(batch.flip(-1)).float().flip(-1)
        if out.shape[-2:] != grid:
            out = F.interpolate(out, size=grid, mode="bilinear", align_corners=False)
        total = total + out
    return total / (len(sizes) * (2 if flip else 1))


def _image_batches(count: int, batch_size: int, desc: str, action: str, progress: bool,
                   cancel: threading.Event | None) -> Iterator[slice]:
    """Slices of `batch_size` images over `count`, with a progress bar; between batches a
    set `cancel` raises Cancelled ("<action> cancelled after n of count images")."""
    with tqdm(total=count, desc=desc, unit="image", disable=not progress,
              mininterval=0.2 if sys.stderr.isatty() else 15) as bar:
        for start in range(0, count, batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{action} cancelled after {start} of {count} images")
            with work.step(action, start, count):
                yield slice(start, start + batch_size)
            bar.update(min(batch_size, count - start))


@torch.no_grad()
def run_backbone(backbone: Backbone, data: PosedImages, sizes: list[tuple[int, int]], flip: bool,
                 batch_size: int, device: torch.device, progress: bool,
                 cancel: threading.Event | None) -> torch.Tensor:
    """Backbone features of every image: [N, C, h, w] float16 on the CPU."""
    backbone = backbone.to(device)
    outputs = []
    for batch in _image_batches(len(data.names), batch_size, f"features {backbone.name}",
                                "feature extraction", progress, cancel):
        images = data.images[batch].to(device).permute(0, 3, 1, 2).float() / 255
        outputs.append(_averaged_passes(backbone, images, sizes, flip).half().cpu())
    return torch.cat(outputs)


def reduce_features(raw: torch.Tensor, train_ids: list[int], dims: int) -> tuple[torch.Tensor, ...]:
    """raw [N, C, h, w] -> maps [N, h, w, D] float16, plus the PCA mean [C] and components
    [C, D], fitted on the training images only."""
    pca = StreamingPca(raw.shape[1])
    for i in train_ids:
        pca.add(raw[i].flatten(1).T)
    mean, components = pca.fit(dims)
    maps = torch.stack([project(r.permute(1, 2, 0), mean, components).half() for r in raw])
    return maps, mean, components


@torch.no_grad()
def guide_maps(maps: torch.Tensor, data: PosedImages, config: FeaturesConfig, device: torch.device,
               progress: bool, cancel: threading.Event | None, batch_size: int = 8) -> torch.Tensor:
    """maps [N, h, w, D] -> [N, H', W', D] float16: each image's maps upsampled with the
    image as the guide (engine/features/guided.py)."""
    size = guided_map_size((data.height, data.width), config.guided_max_side)
    radius = guided_radius_pixels(config.guided_radius, tuple(maps.shape[1:3]), size)
    out = []
    for batch in _image_batches(len(maps), batch_size, "guided upsampling", "guided upsampling",
                                progress, cancel):
        out.append(guided_upsample(maps[batch].to(device), data.images[batch].to(device), size,
                                   radius, config.guided_eps).half().cpu())
    return torch.cat(out)


def extract_features(data: PosedImages, config: FeaturesConfig, device: torch.device,
                     progress: bool = True, cancel: threading.Event | None = None,
                     use_cache: bool = True) -> FeatureMaps:
    """The scene's feature maps: read from the cache when they are current, else extracted
    (and cached)."""
    channels = BACKBONES[config.backbone].channels
    if config.dims > channels:
        raise IsrfError(f"features.dims: {config.dims} is more than the {channels} channels "
                        f"of {config.backbone}")
    weights = resolve_weights(config.backbone, config.weights, config.download)
    key = cache_key(data, config, weights)
    folder = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir(data)
    path = _cache_file(folder, key)
    if use_cache and path.is_file():
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    backbone = load_backbone(config.backbone, weights)
    raw = run_backbone(backbone, data, [tuple(size) for size in key["input_sizes"]], config.flip,
                       config.batch_size, device, progress, cancel)
    maps, mean, components = reduce_features(raw, data.train_ids, config.dims)
    if config.guided_radius:
        maps = guide_maps(maps, data, config, device, progress, cancel)
    features = FeatureMaps(maps, (data.height, data.width), mean, components, key, path)
    if use_cache:
        _write_cache(path, features)
    return features
