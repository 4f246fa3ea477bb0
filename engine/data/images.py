"""Reading images with validation: every failure names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import IsrfError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)
"""EXIF orientations that turn the image by 90 degrees (width and height swap)."""

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "environment": None}
"""data.background -> the colour behind the scene (None: learnt, `Environment`)."""


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in sorted (pose) order."""
    if not folder.is_dir():
        raise IsrfError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise IsrfError(f"{folder}: no .png/.jpg images in the folder")
    return files


def open_upright(path: Path) -> Image.Image:
    """One image, decoded, turned upright by its EXIF orientation (phone photos store
    the sensor's pixels and a rotation tag), 16-bit greyscale brought to 8 bits."""
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise IsrfError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise IsrfError(f"{path}: not a readable image ({error})") from None
    if image.mode in ("I;16", "I;16B", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.float32) / 257).astype(np.uint8))
    return image


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as `open_upright` gives it, from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise IsrfError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise IsrfError(f"{path}: not a readable image ({error})") from None
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def read_rgb(path: Path, background: str) -> np.ndarray:
    """One image as uint8 [H, W, 3], upright; RGBA is composited onto `background` (a
    name of BACKGROUNDS; "environment" takes opaque images only: the room behind is learnt)."""
    image = open_upright(path)
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        if BACKGROUNDS[background] is None:
            if (rgba[..., 3] < 1).any():
                raise IsrfError(f"{path}: has transparent pixels, but data.background = "
                                f"{background!r} learns what is behind the scene from opaque "
                                "photos; use white or black for images with alpha")
            return np.round(rgba[..., :3] * 255).astype(np.uint8)
        bg = np.asarray(BACKGROUNDS[background], dtype=np.float32)
        rgb = rgba[..., :3] * rgba[..., 3:] + bg * (1 - rgba[..., 3:])
        return np.round(rgb * 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_images(paths: list[Path], background: str) -> np.ndarray:
    """All images as uint8 [N, H, W, 3]; they must share one size."""
    images = []
    for path in paths:
        image = read_rgb(path, background)
        if images and image.shape != images[0].shape:
            h0, w0 = images[0].shape[:2]
            raise IsrfError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but "
                            f"{paths[0].name} is {w0}x{h0}; all images must have one size")
        images.append(image)
    return np.stack(images)
