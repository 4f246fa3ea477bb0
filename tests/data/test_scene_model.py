"""How a scene is modelled when data.format / data.background are "auto": from the
camera layout that `isrf pose` writes (engine.data.choose_model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.cli import train_command
from engine.config import DataConfig, load_config
from engine.data import choose_model, load_scene
from engine.errors import IsrfError
from synthetic import make_sphere_scene, write_llff


def _with_layout(scene: Path, layout: str, **keys) -> Path:
    path = scene / "transforms.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "camera_layout": layout, **keys}))
    return scene


@pytest.fixture(scope="module")
def forward(tmp_path_factory) -> Path:
    """A forward-facing sphere scene as `isrf pose` would describe it (its LLFF twin's
    bounds: depth_range near 2)."""
    scene = make_sphere_scene(tmp_path_factory.mktemp("forward"), views=8, size=40,
                              forward_facing=True, sky=True)
    return _with_layout(scene, "forward-facing", depth_range=[2.0, 4.5])


def test_scenes_without_a_layout_keep_their_usual_model(tmp_path):
    synthetic = make_sphere_scene(tmp_path / "synthetic", views=4, size=16)
    model = choose_model(DataConfig(path=str(synthetic)), synthetic)
    assert (model.format, model.ndc, model.background, model.note) == ("transforms", False, "white", "")
    llff = write_llff(synthetic, tmp_path / "llff")
    assert choose_model(DataConfig(path=str(llff)), llff).background == "black"


def test_a_360_capture_gets_a_learnt_environment_and_says_so(tmp_path):
    scene = _with_layout(make_sphere_scene(tmp_path, views=4, size=16, sky=True), "360")
    loaded = load_scene(DataConfig(path=str(scene)))
    assert loaded.space == "bounded" and loaded.background is None   # None: the Environment
    assert "camera layout 360" in loaded.summary() and "environment" in loaded.summary()
    chosen = choose_model(DataConfig(path=str(scene), background="black"), scene)
    assert chosen.background == "black"                              # a set value wins


def test_a_forward_facing_capture_is_normalised_like_llff_and_trained_in_ndc(forward, tmp_path):
    posed = load_scene(DataConfig(path=str(forward)))
    assert posed.space == "ndc" and posed.background == (0.0, 0.0, 0.0)
    assert "camera layout forward-facing" in posed.summary() and "NDC" in posed.summary()
    # The same cameras as an LLFF capture with the same near bound: the same scene frame.
    llff = load_scene(DataConfig(path=str(write_llff(forward, tmp_path / "llff")), format="llff"))
    assert torch.allclose(posed.cameras.c2w, llff.cameras.c2w, atol=1e-5)
    assert torch.allclose(posed.to_scene, llff.to_scene, atol=1e-5)
    assert posed.ndc_intrinsics == pytest.approx(llff.ndc_intrinsics)
    explicit = load_scene(DataConfig(path=str(forward), format="transforms"))
    assert explicit.space == "bounded"                                # a set format wins


def test_ndc_without_a_depth_range_is_named(forward, tmp_path):
    meta = json.loads((forward / "transforms.json").read_text())
    del meta["depth_range"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    (tmp_path / "images").symlink_to(forward / "images")
    with pytest.raises(IsrfError, match="depth_range"):
        load_scene(DataConfig(path=str(tmp_path)))
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "depth_range": [3, 1]}))
    with pytest.raises(IsrfError, match="0 < near < far"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_an_unknown_layout_is_named(forward, tmp_path):
    meta = json.loads((forward / "transforms.json").read_text())
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "camera_layout": "sideways"}))
    with pytest.raises(IsrfError, match="camera_layout"):
        load_scene(DataConfig(path=str(tmp_path)))


def test_the_capture_presets_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # not read from the current folder: shipped with the engine
    room_like, fern_like = load_config("capture_360"), load_config("capture_forward.toml")
    assert room_like.field.alpha_init == 1e-3 and room_like.train.weight_entropy == 0
    assert fern_like.field.stepsize == 1.0 and fern_like.train.weight_tv_density == 1e-5
    for config in (room_like, fern_like):
        assert config.data.format == "auto" and config.data.background == "auto"
    with pytest.raises(IsrfError, match="capture_sideways: config file not found"):
        load_config("capture_sideways")


def test_isrf_pose_prints_the_preset_of_the_layout_and_a_downscale_to_about_1000_px():
    phone = train_command(Path("scenes/my table"), "360", 4032)
    assert phone.startswith("isrf train --config capture_360 --set data.path='scenes/my table'")
    assert phone.endswith("--set train.out_dir='runs/my table' --set data.downscale=4")
    small = train_command(Path("scenes/wall"), "forward-facing", 800)
    assert "--config capture_forward" in small and "downscale" not in small


def test_a_scene_box_is_refused_outside_a_bounded_space(forward):
    with pytest.raises(IsrfError, match="bounded scenes only, not ndc"):
        load_scene(DataConfig(path=str(forward), bbox=[[-1, -1, -1], [1, 1, 1]]))
