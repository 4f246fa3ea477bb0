"""Checkpoints: one file per training run, written atomically (temp file + rename)."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.atomic import atomic_path
from engine.errors import IsrfError

FORMAT = "isrf-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, **content) -> None:
    with atomic_path(path) as temp:
        torch.save({"format": FORMAT, "version": VERSION, **content}, temp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise IsrfError(f"{path}: checkpoint not found")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        # torch's messages run over many lines (and advise unsafe loading): keep the first.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsrfError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise IsrfError(f"{path}: not an ISRF checkpoint")
    if content.get("version") != VERSION:
        raise IsrfError(f"{path}: checkpoint version {content.get('version')} is not supported "
                        f"(this engine reads version {VERSION})")
    return content
