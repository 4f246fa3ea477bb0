"""Real (short) training runs on a real scene on disk: quality, checkpoints, resume, cancel."""

from __future__ import annotations

import contextlib
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine import work
from engine.cli import main
from engine.config import load_config
from engine.errors import Cancelled
from engine.scene import Scene
from engine.train.trainer import Trainer, field_for
from synthetic import make_sphere_scene, write_llff

# A small field that trains in seconds on 2 CPU cores.
TINY = [
    "field.num_voxels=110592", "field.num_voxels_start=8000", "field.upscale_steps=[100,200]",
    "train.batch_rays=1024", "train.eval_every=0", "train.checkpoint_every=0",
    "distill.steps=0",  # the feature stage has its own tests (test_distill.py)
]
# A learnt environment's settings as first chosen for the room (a fog to carve, no entropy
# loss); configs/room.toml now starts from a thinner fog (1e-3), this small scene's figures
# were measured with 1e-2.
ENVIRONMENT = ["field.alpha_init=1e-2", "train.weight_entropy=0"]
PSNR_THRESHOLD = 20.0  # dB on held-out views after 500 steps (measured: 22.3 dB)


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    return make_sphere_scene(tmp_path_factory.mktemp("spheres"), views=40, size=48)


def _config(scene_path, out_dir, *extra):
    return load_config(None, [f"data.path={scene_path}", f"train.out_dir={out_dir}", *TINY, *extra])


@pytest.mark.slow
def test_short_training_beats_psnr_threshold(spheres, tmp_path):
    config = _config(spheres, tmp_path, "train.steps=500")
    scene = Scene(config, "cpu")
    untrained = Trainer(scene.data, config, field_for(scene.data, config), torch.device("cpu"))
    assert untrained.evaluate() < PSNR_THRESHOLD - 5
    report = scene.train(progress=False)
    assert report.steps == 500
    assert report.final_psnr > PSNR_THRESHOLD
    # the box was tightened around the spheres and empty space is skipped
    assert scene.field.occupancy.float().mean() < 0.5
    assert (scene.field.box_max - scene.field.box_min).prod() < 2.0 * 2.0 * 1.2


@pytest.mark.parametrize("fmt", ["llff", "360"])
def test_ndc_and_contracted_spaces_learn(spheres, tmp_path, fmt):
    """The forward-facing (NDC) and unbounded (contracted) paths train end to end."""
    # LLFF captures are forward-facing; 360 captures circle the scene.
    source = make_sphere_scene(tmp_path / "source", views=24, size=48, forward_facing=fmt == "llff")
    llff = write_llff(source if fmt == "llff" else spheres, tmp_path / "llff")
    config = _config(llff, tmp_path / "run", "train.steps=150", f'data.format="{fmt}"',
                     "data.background=black", "train.weight_entropy=0")
    scene = Scene(config, "cpu")
    untrained = Trainer(scene.data, config, field_for(scene.data, config), torch.device("cpu"))
    before = untrained.evaluate()
    report = scene.train(progress=False)
    assert report.final_psnr > before + 3  # measured: +4.0 dB (llff), +3.8 dB (360)
    assert report.final_psnr > 21


@pytest.mark.slow
def test_a_sky_behind_the_scene_is_learnt_as_the_environment(tmp_path):
    """Opaque photos with a sky behind the spheres: the learnt environment explains the
    sky; a constant background has to paint it on the box with density."""
    sky = make_sphere_scene(tmp_path / "sky", views=40, size=48, sky=True)
    psnr = {}
    for background in ("white", "environment"):
        config = _config(sky, tmp_path / background, "train.steps=300",
                         f'data.background="{background}"', *ENVIRONMENT)
        psnr[background] = Scene(config, "cpu").train(progress=False).final_psnr
    # measured: 22.3 dB with the environment, 15.4 with a white background
    assert psnr["environment"] > psnr["white"] + 3, psnr
    assert psnr["environment"] > PSNR_THRESHOLD, psnr


def test_checkpoint_round_trip_renders_identically(spheres, tmp_path):
    scene = Scene(_config(spheres, tmp_path, "train.steps=30"), "cpu")
    report = scene.train(progress=False)
    restored = Scene.from_checkpoint(report.checkpoint, "cpu")
    assert restored.step == 30
    for key in ("rgb", "depth", "opacity"):
        assert torch.equal(scene.render(3)[key], restored.render(3)[key])


def test_resume_continues_from_the_checkpoint(spheres, tmp_path):
    first = Scene(_config(spheres, tmp_path, "train.steps=20"), "cpu").train(progress=False)
    resumed_scene = Scene(_config(spheres, tmp_path, "train.steps=40"), "cpu")
    report = resumed_scene.train(resume=True, progress=False)
    assert report.steps == 40
    assert [h["step"] for h in report.history] == [20, 40]  # earlier history kept
    assert report.seconds > first.seconds


class CancelAfter:
    """Step hooks (engine/work.py, as a server job's) that ask to cancel once `steps`
    steps are done: the cancel comes at a known step, not after some time."""

    def __init__(self, cancel: threading.Event, steps: int):
        self.cancel, self.steps = cancel, steps

    def device(self):
        return contextlib.nullcontext()

    def report(self, stage: str, done: int, total: int, metrics: dict) -> None:
        if done >= self.steps:
            self.cancel.set()


def test_cancel_saves_a_checkpoint_that_resumes(spheres, tmp_path):
    cancel = threading.Event()
    scene = Scene(_config(spheres, tmp_path, "train.steps=1000"), "cpu")
    with pytest.raises(Cancelled, match="cancelled at step 7; resume from"):
        with work.running(CancelAfter(cancel, 7)):
            scene.train(progress=False, cancel=cancel)
    saved = Scene.from_checkpoint(tmp_path / "checkpoint.pt", "cpu")
    assert saved.step == 7
    report = Scene(_config(spheres, tmp_path, "train.steps=12"), "cpu").train(resume=True,
                                                                              progress=False)
    assert report.steps == 12


def test_cli_train_then_render_writes_pngs_and_metrics(spheres, tmp_path, capsys):
    sets = [f"--set={item}" for item in
            [f"data.path={spheres}", f"train.out_dir={tmp_path / 'run'}", *TINY, "train.steps=40"]]
    assert main(["train", *sets, "--device", "cpu"]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    out = tmp_path / "renders"
    assert main(["render", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                 "--views", "test", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["index"] for row in metrics["per_view"]] == [0, 8, 16, 24, 32]
    for row in metrics["per_view"]:
        image = np.asarray(Image.open(out / row["file"]))
        assert image.shape == (48, 48, 3)
        assert 5 < row["psnr"] < 60 and -1 <= row["ssim"] <= 1
    assert metrics["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in metrics["per_view"]]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_quality(spheres, tmp_path):
    scene = Scene(_config(spheres, tmp_path, "train.steps=300"), "cuda")
    report = scene.train(progress=False)
    assert scene.field.density.grid.is_cuda
    assert report.final_psnr > PSNR_THRESHOLD - 2
