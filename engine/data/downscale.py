"""Smaller copies of a scene's photos, made once and kept beside them (`data.downscale`).

A photo `<dir>/<stem>.<ext>` at factor N is read from `<dir>_<N>/<stem>.<any image
suffix>`: the layout of LLFF's `images_4/` and of nerfstudio's processed captures, so
copies another tool made are used as they are. A missing copy is made there (upright,
Lanczos-filtered, PNG); where `<dir>` cannot be written (shared, read-only data) the
copies go to `~/.cache/isrf/downscaled/` instead. A copy older than its photo is made
again. Sizes are rounded (W / N, H / N); a copy another tool made may differ from that by
a pixel (floor instead of round), and the loaders scale intrinsics by the sizes actually
read, so either is exact.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from engine.atomic import atomic_path
from engine.data.images import IMAGE_SUFFIXES, has_alpha, open_upright, upright_size
from engine.errors import IsrfError


def cache_root() -> Path:
    """Where copies go when the photos' folder cannot be written ($XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "isrf" / "downscaled"


def downscaled_size(width: int, height: int, factor: int) -> tuple[int, int]:
    return max(1, round(width / factor)), max(1, round(height / factor))


def downscaled_files(files: list[Path], factor: int, progress: bool = True) -> list[Path]:
    """The copies of `files` at 1 / `factor` (each made if missing or stale), in order."""
    if factor == 1:
        return list(files)
    copies, to_make = [], []
    for source in files:
        copy = _existing_copy(source, factor)
        if copy is None or copy.stat().st_mtime < source.stat().st_mtime:
            copy = _copy_folder(source.parent, factor) / f"{source.stem}.png"
            to_make.append((source, copy))
        copies.append(copy)
    for source, copy in tqdm(to_make, desc=f"downscale photos 1/{factor}", unit="photo",
                             disable=not progress or not to_make):
        _write_copy(source, copy, factor)
    for source, copy in zip(files, copies):
        _check_size(source, copy, factor)
    return copies


def _candidate_folders(folder: Path, factor: int) -> list[Path]:
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    return [folder.with_name(f"{folder.name}_{factor}"),
            cache_root() / f"{folder.name}_{key}_{factor}"]


def _existing_copy(source: Path, factor: int) -> Path | None:
    for folder in _candidate_folders(source.parent, factor):
        for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
            if (folder / f"{source.stem}{suffix}").is_file():
                return folder / f"{source.stem}{suffix}"
    return None


def _copy_folder(folder: Path, factor: int) -> Path:
    """Where new copies of `folder`'s photos go: beside it if it can be written."""
    for candidate in _candidate_folders(folder, factor):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise IsrfError(f"{folder}: cannot write downscaled copies beside it or under "
                    f"{cache_root()}; make one of them writable")


def _write_copy(source: Path, copy: Path, factor: int) -> None:
    image = open_upright(source)
    size = downscaled_size(*image.size, factor)
    if has_alpha(image):
        # Filter premultiplied colour, so transparent pixels' colour does not bleed in.
        small = image.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
    else:
        small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    with atomic_path(copy) as temp:
        small.save(temp, format="PNG")


def _check_size(source: Path, copy: Path, factor: int) -> None:
    expected = downscaled_size(*upright_size(source), factor)
    found = upright_size(copy)
    if any(abs(a - b) > 1 for a, b in zip(found, expected)):
        raise IsrfError(f"{copy}: is {found[0]}x{found[1]}, but 1/{factor} of {source.name} "
                        f"is about {expected[0]}x{expected[1]}; delete {copy.parent} to have "
                        "the copies made again")
