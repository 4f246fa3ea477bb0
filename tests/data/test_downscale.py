"""data.downscale and EXIF orientation, on real files: the analytic sphere scene."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import load_scene
from engine.data.images import EXIF_ORIENTATION, read_rgb
from engine.errors import IsrfError
from synthetic import SPHERES, make_sphere_scene, write_llff

EXIF_ROTATE_90_CW = 6
"""EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise to be upright."""


@pytest.fixture(scope="module")
def spheres(tmp_path_factory) -> Path:
    return make_sphere_scene(tmp_path_factory.mktemp("spheres"), views=6, size=40)


@pytest.fixture
def scene_copy(spheres, tmp_path) -> Path:
    return Path(shutil.copytree(spheres, tmp_path / "scene"))


def _relative_projections(scene) -> torch.Tensor:
    """Each sphere centre's pixel in each view over the image size: [views, spheres, 2]."""
    centres = torch.tensor([centre for centre, _, _ in SPHERES])
    centres = centres @ scene.to_scene[:3, :3].T + scene.to_scene[:3, 3]
    size = torch.tensor([scene.width, scene.height], dtype=torch.float32)
    return torch.stack([scene.cameras.project(v, centres)[0] / size for v in range(len(scene.names))])


def test_transforms_downscale_makes_copies_once_and_keeps_projections(scene_copy):
    full = load_scene(DataConfig(path=str(scene_copy)))
    small = load_scene(DataConfig(path=str(scene_copy), downscale=3))
    assert small.images.shape == (6, 13, 13, 3)  # round(40 / 3)
    copies = sorted((scene_copy / "images_3").iterdir())
    assert [c.name for c in copies] == [f"r_{k:03d}.png" for k in range(6)]
    assert torch.allclose(_relative_projections(small), _relative_projections(full), atol=1e-5)
    # A smaller copy of the same picture: its mean colour matches the full photo's.
    assert np.allclose(small.images.float().mean((1, 2)), full.images.float().mean((1, 2)), atol=4)

    stamps = [c.stat().st_mtime_ns for c in copies]
    again = load_scene(DataConfig(path=str(scene_copy), downscale=3))
    assert [c.stat().st_mtime_ns for c in copies] == stamps  # reused, not made again
    assert torch.equal(again.images, small.images)


def test_a_copy_older_than_its_photo_is_made_again(scene_copy):
    load_scene(DataConfig(path=str(scene_copy), downscale=2))
    copy, photo = scene_copy / "images_2" / "r_001.png", scene_copy / "images" / "r_001.png"
    Image.new("RGBA", (20, 20), (255, 0, 0, 255)).save(copy)
    os.utime(copy, (1, 1))  # older than the photo
    scene = load_scene(DataConfig(path=str(scene_copy), downscale=2))
    assert not (scene.images[1] == torch.tensor([255, 0, 0], dtype=torch.uint8)).all(-1).all()
    assert copy.stat().st_mtime > photo.stat().st_mtime


def test_a_copy_of_the_wrong_size_is_named(scene_copy):
    load_scene(DataConfig(path=str(scene_copy), downscale=2))
    Image.new("RGB", (7, 7)).save(scene_copy / "images_2" / "r_002.png")
    with pytest.raises(IsrfError, match=r"r_002\.png: is 7x7, but 1/2 of r_002\.png is about 20x20"):
        load_scene(DataConfig(path=str(scene_copy), downscale=2))


def test_copies_go_to_the_cache_when_beside_is_not_writable(scene_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (scene_copy / "images_2").write_text("a file where the copies' folder would be")
    scene = load_scene(DataConfig(path=str(scene_copy), downscale=2))
    assert scene.images.shape[1:3] == (20, 20)
    cached = list((tmp_path / "cache" / "isrf" / "downscaled").glob("images_*_2/r_000.png"))
    assert len(cached) == 1 and scene.files[0] == cached[0].resolve()


def test_llff_downscale_makes_images_n_from_images(spheres, tmp_path):
    write_llff(spheres, tmp_path)
    full = load_scene(DataConfig(path=str(tmp_path), format="llff"))
    small = load_scene(DataConfig(path=str(tmp_path), format="llff", downscale=4))
    assert small.images.shape == (6, 10, 10, 3)
    assert len(list((tmp_path / "images_4").glob("img_*.png"))) == 6
    assert torch.allclose(_relative_projections(small), _relative_projections(full), atol=1e-5)


def _save_rotated_with_exif(upright: Path, target: Path) -> None:
    """Store `upright` the way a phone held sideways does: the pixels turned a quarter
    counter-clockwise, and an EXIF tag that says to turn them back."""
    image = Image.open(upright)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = EXIF_ROTATE_90_CW
    image.transpose(Image.Transpose.ROTATE_90).save(target, exif=exif)


def test_exif_rotated_photos_load_upright(spheres, tmp_path):
    # A non-square picture, so that a missed rotation changes its shape.
    upright = np.zeros((30, 50, 3), np.uint8)
    upright[:10, :20] = (255, 0, 0)  # a red block at the top left
    Image.fromarray(upright).save(tmp_path / "upright.png")
    _save_rotated_with_exif(tmp_path / "upright.png", tmp_path / "stored.png")
    assert Image.open(tmp_path / "stored.png").size == (30, 50)
    assert np.array_equal(read_rgb(tmp_path / "stored.png", "white"), upright)


def test_exif_rotated_frame_loads_and_downscales_upright(scene_copy):
    photo = scene_copy / "images" / "r_004.png"
    full = load_scene(DataConfig(path=str(scene_copy))).images[4]
    small = load_scene(DataConfig(path=str(scene_copy), downscale=2)).images[4]
    shutil.rmtree(scene_copy / "images_2")
    _save_rotated_with_exif(photo, photo)
    assert torch.equal(load_scene(DataConfig(path=str(scene_copy))).images[4], full)
    again = load_scene(DataConfig(path=str(scene_copy), downscale=2)).images[4]
    assert torch.equal(again, small)


def test_w_and_h_are_checked_against_the_full_size_photo(scene_copy):
    meta = json.loads((scene_copy / "transforms.json").read_text())
    meta["w"] = 41
    (scene_copy / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(IsrfError, match="w/h say 41x40 but the image is 40x40"):
        load_scene(DataConfig(path=str(scene_copy), downscale=2))
