"""The segmentation session file: every segment's current state in one .npz, written
atomically, readable only by a session over the same voxels (`fingerprint`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_path
from engine.config import SegmentConfig, upgrade_saved_segment
from engine.errors import IsrfError
from engine.segment.history import Segment, SegmentState, params_with
from engine.segment.strokes import parse_step

SESSION_FORMAT = "isrf-segmentation"
SESSION_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DomainKey:
    """What a saved session must match: the voxels and how their features are made."""
    size: int
    resolution: tuple[int, int, int]
    colour_weight: float
    fingerprint: str
    dims: int              # feature dimensions of the stroke centres
    device: torch.device


def save_segments(path: str | Path, segments: list[Segment], defaults: SegmentConfig,
                  key: DomainKey) -> Path:
    """Write the segments' current states (not their undo histories) to `path`."""
    path = Path(path)
    meta = {"format": SESSION_FORMAT, "version": SESSION_VERSION,
            "domain": {"size": key.size, "resolution": list(key.resolution),
                       "colour_weight": key.colour_weight, "fingerprint": key.fingerprint},
            "defaults": dataclasses.asdict(defaults), "segments": []}
    arrays = {}
    for i, segment in enumerate(segments):
        state = segment.state
        meta["segments"].append({"name": segment.name, "params": dataclasses.asdict(segment.params),
                                 "strokes": [s.to_dict() for s in state.strokes]})
        arrays[f"positive_{i}"] = np.packbits(state.positive.cpu().numpy())
        arrays[f"negative_{i}"] = np.packbits(state.negative.cpu().numpy())
        arrays[f"positive_centres_{i}"] = state.positive_centres.cpu().numpy()
        arrays[f"negative_centres_{i}"] = state.negative_centres.cpu().numpy()
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                **arrays)
    return path


def load_segments(path: str | Path, key: DomainKey) -> dict[str, Segment]:
    """The segments saved in `path`, checked against `key` (each problem names the file)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as content:
            meta = json.loads(content["meta"].tobytes().decode())
            arrays = {name: content[name] for name in content.files if name != "meta"}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise IsrfError(f"{path}: not a readable segmentation session ({error})") from None
    if meta.get("format") != SESSION_FORMAT or meta.get("version") != SESSION_VERSION:
        raise IsrfError(f"{path}: not a segmentation session of version {SESSION_VERSION}")
    saved_weight = meta["domain"].get("colour_weight", 0.0)
    if saved_weight != key.colour_weight:
        raise IsrfError(f"{path}: saved with [segment] colour_weight {saved_weight}, this "
                        f"session uses {key.colour_weight} (set it to match)")
    if meta["domain"]["fingerprint"] != key.fingerprint:
        raise IsrfError(f"{path}: saved for another trained field (its voxels differ)")

    def voxels(name: str) -> torch.Tensor:
        bits = np.unpackbits(arrays[name], count=key.size).astype(bool)
        return torch.from_numpy(bits).to(key.device)

    def centres(name: str) -> torch.Tensor:
        return torch.from_numpy(arrays[name]).float().reshape(-1, key.dims).to(key.device)

    segments = {}
    for i, saved in enumerate(meta["segments"]):
        source = f"{path}: segment {saved.get('name')!r}"
        try:
            state = SegmentState(
                tuple(parse_step(s, f"{source} stroke") for s in saved["strokes"]),
                voxels(f"positive_{i}"), voxels(f"negative_{i}"),
                centres(f"positive_centres_{i}"), centres(f"negative_centres_{i}"))
        except (KeyError, ValueError, RuntimeError) as error:
            raise IsrfError(f"{source}: damaged ({error})") from None
        params = params_with(SegmentConfig(), upgrade_saved_segment(saved["params"], source),
                             f"{source} params")
        segments[saved["name"]] = Segment(saved["name"], params, state)
    return segments
