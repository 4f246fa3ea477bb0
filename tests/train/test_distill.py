"""The feature stage: distillation into the VM feature field, resume, cancel, rendering."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.config import load_config
from engine.errors import Cancelled, IsrfError
from engine.field.feature_field import FeatureField
from engine.field.renderer import RaySpace
from engine.scene import Scene
from engine.train.checkpoint import load_checkpoint
from engine.train.distiller import Distiller, feature_cosine
from synthetic import make_sphere_scene

COLOR = [
    "field.num_voxels=110592", "field.num_voxels_start=8000", "field.upscale_steps=[100,200]",
    "train.batch_rays=1024", "train.eval_every=0", "train.checkpoint_every=0", "train.steps=300",
]
FEATURES = ["features.input_size=96", "features.dims=16", "distill.batch_rays=1024",
            "distill.checkpoint_every=0"]
COSINE_THRESHOLD = 0.8
"""Held-out cosine (scene pixels) after 150 distillation steps; measured 0.91. A fresh
feature field renders ~0.0."""


@pytest.fixture(scope="module")
def colour_checkpoint(tmp_path_factory):
    """A sphere scene whose colour stage is trained once for the whole module."""
    root = tmp_path_factory.mktemp("distill")
    scene_path = make_sphere_scene(root / "spheres", views=40, size=48)
    config = load_config(None, [f"data.path={scene_path}", f"train.out_dir={root / 'run'}",
                                *COLOR, *FEATURES, "distill.steps=0"])
    scene = Scene(config, "cpu")
    scene.train(progress=False, final_eval=False)
    return scene.checkpoint_path


def _scene(checkpoint, tmp_path, *extra) -> Scene:
    """The trained colour stage, with a fresh output folder and the given overrides."""
    content = load_checkpoint(checkpoint)
    scene = Scene.from_checkpoint(checkpoint, "cpu")
    config = load_config(None, [f"data.path={scene.config.data.path}", f"train.out_dir={tmp_path}",
                                *COLOR, *FEATURES, *extra])
    fresh = Scene(config, "cpu")
    fresh._restore(content)
    return fresh


def _held_out_cosine(scene: Scene) -> float:
    space, cameras = RaySpace.of(scene.data), scene.data.cameras
    values = [feature_cosine(scene.field, scene.features, space, cameras, scene.feature_maps, i)[0]["cosine"]
              for i in scene.data.test_ids]
    return float(np.mean(values))


def test_distillation_raises_held_out_cosine(colour_checkpoint, tmp_path):
    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=150")
    scene.features = FeatureField(16, scene.config.distill.rank, scene.field.resolution)
    before = _held_out_cosine(scene)
    report = scene.distill(progress=False)
    assert report.steps == 150
    print(f"held-out cosine {before:.3f} -> {report.test_cosine:.3f}")
    assert report.test_cosine > COSINE_THRESHOLD > before + 0.3
    assert report.test_cosine == pytest.approx(_held_out_cosine(scene), abs=1e-6)
    # The radiance field is only read: colour renders are unchanged by distillation.
    reference = Scene.from_checkpoint(colour_checkpoint, "cpu").render(0)["rgb"]
    assert torch.equal(scene.render(0)["rgb"], reference)


def test_weight_drawn_samples_render_the_same_in_expectation(colour_checkpoint, tmp_path):
    from engine.field.renderer import render_feature_rays

    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=30")
    scene.distill(progress=False, final_eval=False)   # features that vary like real ones
    features = scene.features
    torch.manual_seed(0)
    origins, dirs = scene.data.cameras.image_rays(3)
    space = RaySpace.of(scene.data)
    with torch.no_grad():
        exact = render_feature_rays(scene.field, features, space, origins, dirs)
        drawn = torch.stack([render_feature_rays(scene.field, features, space, origins, dirs,
                                                 samples_per_ray=16)["features"] for _ in range(40)])
    hit = exact["opacity"] > 0.1
    assert hit.sum() > 100
    scale = exact["features"][hit].abs().mean()
    error = (drawn.mean(0) - exact["features"])[hit].abs().mean()
    assert error < 0.05 * scale, (float(error), float(scale))


def test_feature_field_memory_is_low_rank():
    # fern images_4 at 320^3: a dense float32 64-channel grid would be 8.4 GB.
    field = FeatureField(64, 16, [320, 320, 320])
    assert field.num_bytes() < 25 * 2**20


def test_checkpoint_round_trip_and_resume(colour_checkpoint, tmp_path):
    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=20")
    scene.distill(progress=False, final_eval=False)
    content = load_checkpoint(scene.checkpoint_path)
    assert content["features"]["step"] == 20 and content["step"] == 300

    loaded = Scene.from_checkpoint(scene.checkpoint_path, "cpu")
    space, cameras = RaySpace.of(loaded.data), loaded.data.cameras
    a = feature_cosine(scene.field, scene.features, space, cameras, scene.feature_maps, 0)[1]
    b = feature_cosine(loaded.field, loaded.features, space, cameras, loaded.feature_maps, 0)[1]
    assert torch.equal(a, b)

    more = _scene(colour_checkpoint, tmp_path, "distill.steps=30")
    more._restore(load_checkpoint(scene.checkpoint_path))
    report = more.distill(resume=True, progress=False, final_eval=False)
    assert report.steps == 30 and load_checkpoint(more.checkpoint_path)["features"]["step"] == 30


def test_cancel_saves_then_resume_finishes(colour_checkpoint, tmp_path, monkeypatch):
    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=400")
    cancel = threading.Event()
    real_step = Distiller.train_step

    def step_then_cancel(self):  # as if another thread (the UI) cancelled during step 6
        if self.step == 5:
            cancel.set()
        return real_step(self)

    monkeypatch.setattr(Distiller, "train_step", step_then_cancel)
    with pytest.raises(Cancelled, match="distill cancelled at step 6; resume from"):
        scene.distill(progress=False, cancel=cancel)
    monkeypatch.setattr(Distiller, "train_step", real_step)
    saved = load_checkpoint(scene.checkpoint_path)
    assert saved["features"]["step"] == 6 and saved["step"] == 300

    resumed = Scene(scene.config, "cpu")
    resumed.train(resume=True, progress=False)          # colour stage done: kept as is
    report = resumed.distill(resume=True, progress=False, final_eval=False)
    assert report.steps == 400


def test_resume_refuses_features_from_another_extraction(colour_checkpoint, tmp_path):
    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=5")
    scene.distill(progress=False, final_eval=False)
    other = _scene(colour_checkpoint, tmp_path, "distill.steps=10", "features.dims=8")
    other._restore(load_checkpoint(scene.checkpoint_path))
    with pytest.raises(IsrfError, match="distilled from other 2D features"):
        other.distill(resume=True, progress=False)


def test_more_colour_training_drops_stale_features(colour_checkpoint, tmp_path):
    scene = _scene(colour_checkpoint, tmp_path, "distill.steps=5")
    scene.distill(progress=False, final_eval=False)
    longer = Scene(load_config(None, [f"data.path={scene.config.data.path}", f"train.out_dir={tmp_path}",
                                      *COLOR, *FEATURES, "train.steps=310", "distill.steps=0"]), "cpu")
    longer.train(resume=True, progress=False, final_eval=False)
    content = load_checkpoint(longer.checkpoint_path)
    assert content["step"] == 310 and "features" not in content and longer.features is None


def test_cli_features_train_and_render_features(colour_checkpoint, tmp_path, capsys):
    data_path = Scene.from_checkpoint(colour_checkpoint, "cpu").config.data.path
    sets = [f"--set={item}" for item in [f"data.path={data_path}", f"train.out_dir={tmp_path / 'run'}",
                                         *COLOR, *FEATURES, "train.steps=200", "distill.steps=30"]]
    assert main(["features", *sets, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0: 40 images -> 48x48 feature maps of 16 channels" in out  # guided: image size
    assert "cache: " in out

    assert main(["train", *sets, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "features: 30 steps" in out and "test feature cosine" in out

    renders = tmp_path / "renders"
    assert main(["render", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--features",
                 "--out", str(renders)]) == 0
    assert "feature cosine" in capsys.readouterr().out
    metrics = json.loads((renders / "metrics.json").read_text())
    for row in metrics["per_view"]:
        picture = np.asarray(Image.open(renders / row["feature_file"]))
        assert picture.shape == (48, 48 * 2 + 4, 3)      # rendered | gap | 2D
        assert -1 <= row["feature_cosine"] <= 1 and -1 <= row["feature_cosine_all"] <= 1
    assert metrics["mean"]["feature_cosine"] == pytest.approx(
        np.mean([row["feature_cosine"] for row in metrics["per_view"]]))


def test_render_features_without_a_feature_field_is_refused(colour_checkpoint, tmp_path, capsys):
    code = main(["render", "--checkpoint", str(colour_checkpoint), "--features", "--out", str(tmp_path)])
    assert code == 2
    assert "no feature field: train with distill.steps > 0" in capsys.readouterr().err
