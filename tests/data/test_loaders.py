"""Scene loaders on real files: analytic fixtures written by the tests, and the fern capture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data import load_scene
from engine.data.cameras import distort
from engine.errors import IsrfError
from real_scenes import FERN, needs_fern
from synthetic import SPHERES, make_sphere_scene, write_llff



@pytest.fixture(scope="module")
def spheres(tmp_path_factory) -> Path:
    return make_sphere_scene(tmp_path_factory.mktemp("spheres"), views=10, size=40)


def _mask(root: Path, index: int) -> np.ndarray:
    return np.asarray(Image.open(root / "masks" / f"r_{index:03d}.png"))


def _assert_projections_hit_spheres(scene, root: Path, to_scene=torch.eye(4)) -> None:
    """Each sphere centre projects onto a pixel the independent ray tracer gave that sphere,
    and the engine's ray through that pixel passes through the sphere."""
    hits = 0
    for view in range(len(scene.names)):
        mask = _mask(root, view)
        for sphere_id, (centre, _, _) in enumerate(SPHERES, start=1):
            world = torch.tensor([*centre, 1.0]) @ to_scene.T
            pixel, depth = scene.cameras.project(view, world[None, :3])
            col, row = (int(v) for v in pixel[0].floor())
            assert depth[0] > 0
            if mask[row, col] != sphere_id:  # occluded by another sphere in this view
                continue
            hits += 1
            origin, direction = scene.cameras.rays(torch.tensor([view]), torch.tensor([col]),
                                                   torch.tensor([row]))
            unit = direction[0] / direction[0].norm()
            offset = world[:3] - origin[0]
            miss = (offset - (offset @ unit) * unit).norm()
            pixel_size = float(depth[0] / scene.cameras.intrinsics[view, 0])
            assert miss < 1.0 * pixel_size  # within a pixel of the centre's ray
    assert hits >= 2 * len(scene.names)


def test_transforms_loads_images_split_and_box(spheres):
    scene = load_scene(DataConfig(path=str(spheres)))
    assert scene.space == "bounded"
    assert scene.images.shape == (10, 40, 40, 3) and scene.images.dtype == torch.uint8
    assert scene.test_ids == [0, 8] and len(scene.train_ids) == 8
    assert torch.equal(scene.bbox, torch.tensor([[-1.0, -1.0, -0.6], [1.0, 1.0, 0.6]]))
    # transparent pixels are composited onto white
    background = _mask(spheres, 1) == 0
    assert (scene.images[1][torch.from_numpy(background)] == 255).all()


def test_a_learnt_environment_takes_opaque_photos_only(spheres, tmp_path):
    """data.background = "environment" learns what is behind the scene from the photos:
    transparent ones are refused, naming the file; opaque ones load unchanged."""
    with pytest.raises(IsrfError, match=r"r_000\.png: has transparent pixels"):
        load_scene(DataConfig(path=str(spheres), background="environment"))
    sky = make_sphere_scene(tmp_path / "sky", views=10, size=40, sky=True)
    scene = load_scene(DataConfig(path=str(sky), background="environment"))
    assert scene.background is None
    photo = np.asarray(Image.open(sky / "images" / "r_001.png").convert("RGB"))
    assert np.array_equal(scene.images[1].numpy(), photo)


def test_transforms_rays_match_projected_points(spheres):
    _assert_projections_hit_spheres(load_scene(DataConfig(path=str(spheres))), spheres)


def test_transforms_per_frame_intrinsics_and_distortion(spheres, tmp_path):
    meta = json.loads((spheres / "transforms.json").read_text())
    meta["frames"][3].update(fl_x=50.0, fl_y=45.0, cx=19.0, cy=21.0, k1=0.1, k2=-0.05,
                             p1=0.01, p2=-0.02)
    for frame in meta["frames"]:
        frame["file_path"] = str(spheres / frame["file_path"])
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(DataConfig(path=str(tmp_path)))
    assert scene.cameras.intrinsics[3].tolist() == [50.0, 45.0, 19.0, 21.0]
    assert scene.cameras.intrinsics[2, 0] == pytest.approx(20 / math.tan(math.radians(20)))
    # A point on the ray through a pixel projects (with distortion) back onto that pixel.
    cols, rows = torch.tensor([0, 5, 20, 39]), torch.tensor([0, 30, 20, 39])
    origins, dirs = scene.cameras.rays(torch.full((4,), 3), cols, rows)
    pixels, depth = scene.cameras.project(3, origins + 2.5 * dirs)
    expected = torch.stack([cols + 0.5, rows + 0.5], -1).float()
    assert torch.allclose(pixels, expected, atol=1e-3)
    assert torch.allclose(depth, torch.full((4,), 2.5), atol=1e-4)
    # and the distortion model is not the identity
    x, y = distort(torch.tensor([0.3]), torch.tensor([0.2]), scene.cameras.distortion[3][None])
    assert abs(float(x) - 0.3) > 1e-3


def test_transforms_skips_missing_images_with_one_warning(spheres, tmp_path):
    meta = json.loads((spheres / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame["file_path"] = str(spheres / frame["file_path"])
    meta["frames"][2]["file_path"] = "nowhere/a.png"
    meta["frames"][5]["file_path"] = "nowhere/b.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="skipped 2 frame") as caught:
        scene = load_scene(DataConfig(path=str(tmp_path)))
    assert len(caught) == 1
    assert len(scene.names) == 8


def test_transforms_aabb_scale_and_split_files(spheres, tmp_path):
    meta = json.loads((spheres / "transforms.json").read_text())
    del meta["aabb"]
    meta["aabb_scale"] = 2
    for frame in meta["frames"]:
        frame["file_path"] = str(spheres / frame["file_path"]).removesuffix(".png")  # NeRF style
    train, test = dict(meta, frames=meta["frames"][:7]), dict(meta, frames=meta["frames"][7:])
    (tmp_path / "transforms_train.json").write_text(json.dumps(train))
    (tmp_path / "transforms_test.json").write_text(json.dumps(test))
    scene = load_scene(DataConfig(path=str(tmp_path)))
    assert scene.train_ids == list(range(7)) and scene.test_ids == [7, 8, 9]
    # instant-ngp: unit cube = world * 0.33 + 0.5; aabb_scale 2 doubles it around its centre
    # centre: (0.5 - 0.5) / 0.33 = 0; half size: (2 / 2) / 0.33
    half = 1.0 / 0.33
    assert torch.allclose(scene.bbox, torch.tensor([[-half] * 3, [half] * 3]), atol=1e-5)


@pytest.mark.parametrize("fmt", ["llff", "360"])
def test_llff_rays_match_projected_points(spheres, tmp_path, fmt):
    write_llff(spheres, tmp_path)
    scene = load_scene(DataConfig(path=str(tmp_path), format=fmt))
    assert scene.space == ("ndc" if fmt == "llff" else "contracted")
    _assert_projections_hit_spheres(scene, spheres, scene.to_scene)
    if fmt == "360":
        assert scene.cameras.c2w[:, :3, 3].norm(dim=1).max() == pytest.approx(1.0)


@needs_fern
def test_fern_loads():
    scene = load_scene(DataConfig(path=str(FERN), downscale=8))
    assert scene.images.shape == (20, 378, 504, 3)
    assert scene.test_ids == [0, 8, 16] and len(scene.train_ids) == 17
    assert scene.space == "ndc"
    # re-centred: the average camera sits at the origin and looks down -Z (OpenCV +Z axis)
    assert scene.cameras.c2w[:, :3, 3].mean(0).abs().max() < 1e-4
    assert (scene.cameras.c2w[:, 2, 2] < -0.9).all()
    fx = float(scene.cameras.intrinsics[0, 0])
    assert 400 < fx < 415  # fern's focal (~3261 px at 4032 wide) scaled to 504
