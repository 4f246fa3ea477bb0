"""The training loop: random rays -> rendered colour -> loss -> Adam, with progressive
upscaling, occupancy updates, periodic test PSNR, atomic checkpoints, resume, cancel."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from engine.config import Config, FieldConfig, config_to_dict
from engine.data.posed_images import PosedImages
from engine.metrics import psnr
from engine.field.radiance_field import RadianceField
from engine.field.renderer import RaySpace, render_image, render_rays
from engine.field.spaces import SHELL, ndc_rays
from engine.train.checkpoint import save_checkpoint
from engine.train.losses import distortion
from engine.train.loop import StepLoop, decay_rates, decaying_adam, random_pixels

CHECKPOINT_NAME = "checkpoint.pt"


def initial_box(scene: PosedImages) -> tuple[torch.Tensor, torch.Tensor]:
    """The box the field starts in, in its space."""
    if scene.space == "bounded":
        return scene.bbox[0].clone(), scene.bbox[1].clone()
    if scene.space == "contracted":
        return torch.full((3,), -1 - SHELL), torch.full((3,), 1 + SHELL)
    # ndc: the box spanned by all training rays through the image border, near to infinity.
    cams = scene.cameras.subset(scene.train_ids)
    W, H = cams.width, cams.height
    cols = torch.cat([torch.arange(W), torch.arange(W), torch.zeros(H), torch.full((H,), W - 1)])
    rows = torch.cat([torch.zeros(W), torch.full((W,), H - 1), torch.arange(H), torch.arange(H)])
    ids = torch.arange(len(cams)).repeat_interleave(len(cols))
    o, d = cams.rays(ids, cols.repeat(len(cams)).long(), rows.repeat(len(cams)).long())
    o, d = ndc_rays(o, d, scene.ndc_intrinsics)
    ends = torch.cat([o, o + d])
    low, high = ends.amin(0), ends.amax(0)
    low[2], high[2] = -1.0, 1.0
    return low, high


def field_for(scene: PosedImages, config: Config) -> RadianceField:
    box_min, box_max = initial_box(scene)
    f = config.field
    return RadianceField(f, box_min, box_max, f.num_voxels_start,
                         environment_width=(environment_width_at_stage(f, 0)
                                            if scene.background is None else None))


def environment_width_at_stage(f: FieldConfig, stage: int) -> int:
    """The learnt environment doubles in width at each grid upscale, reaching
    `environment_width` at the last (engine/field/environment.py)."""
    return max(8, f.environment_width >> (len(f.upscale_steps) - stage))


@dataclass
class TrainReport:
    steps: int
    seconds: float
    """Time spent in optimisation steps (evaluation excluded)."""
    final_psnr: float | None
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


class Trainer(StepLoop):
    """The colour stage: trains the radiance field (density, colour grid, MLP)."""
    name = "train"

    def __init__(self, scene: PosedImages, config: Config, field: RadianceField,
                 device: torch.device, start_step: int = 0, optimizer_state: dict | None = None,
                 history: list[dict] | None = None, elapsed: float = 0.0):
        self.scene, self.config, self.device = scene, config, device
        self.field = field.to(device)
        self.space = RaySpace.of(scene)
        self.step = start_step
        self.history = list(history or [])
        self.elapsed = elapsed
        self.cameras = scene.cameras.to(device)
        self.images = scene.images.to(device)
        self.train_ids = torch.tensor(scene.train_ids, device=device)
        self.optimizer = self._make_optimizer()
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.out_dir = Path(config.train.out_dir)
        self.total_steps = config.train.steps

    # ----- schedule -------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        return decaying_adam(self.field.parameter_groups(t.lr_density, t.lr_color_grid, t.lr_mlp,
                                                         t.lr_environment))

    def _num_voxels_at_stage(self, stage: int) -> int:
        f = self.config.field
        stages = len(f.upscale_steps)
        return int(f.num_voxels_start * (f.num_voxels / f.num_voxels_start) ** (stage / stages))

    def _maintain_grid(self) -> None:
        f = self.config.field
        if self.step in f.upscale_steps:
            stage = sorted(f.upscale_steps).index(self.step) + 1
            # Not tightened: a contracted space (the box is the whole world), nor with a
            # learnt environment (early on it explains what density has not grown yet: the
            # room scene's floor was cut off the box at the first upscale).
            tighten = self.scene.space != "contracted" and self.field.environment is None
            self.field.rescale(self._num_voxels_at_stage(stage), tighten=tighten)
            if self.field.environment is not None:
                self.field.environment.upscale(environment_width_at_stage(f, stage))
            self.optimizer = self._make_optimizer()
        first = min(f.upscale_steps) if f.upscale_steps else 200
        if self.step >= first and self.step % self.config.train.occupancy_every == 0:
            self.field.update_occupancy()

    # ----- one step -------------------------------------------------------------
    def _random_rays(self, count: int):
        cam, cols, rows = random_pixels(self.train_ids, self.scene.height, self.scene.width, count)
        origins, dirs = self.cameras.rays(cam, cols, rows)
        target = self.images[cam, rows, cols].float() / 255
        return origins, dirs, target

    def _loss(self, out: dict, target: torch.Tensor) -> tuple[torch.Tensor, float]:
        t = self.config.train
        mse = torch.mean((out["rgb"] - target) ** 2)
        loss = mse
        if t.weight_entropy > 0:
            p = out["opacity"].clamp(1e-6, 1 - 1e-6)
            entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean()
            loss = loss + t.weight_entropy * entropy
        if t.weight_sample_rgb > 0:
            error = (out["sample_rgb"] - target[out["sample_ray"]]).square().sum(-1)
            loss = loss + t.weight_sample_rgb * (out["sample_weight"] * error).sum() / len(target)
        if t.weight_tv_density > 0 and self.step < t.tv_until:
            grid = self.field.density.grid[0, 0]
            tv = sum(grid.diff(dim=d).square().mean() for d in range(3))
            loss = loss + t.weight_tv_density * tv
        if t.weight_distortion > 0:
            loss = loss + t.weight_distortion * distortion(out["samples"], out["weights"])
        return loss, mse.item()

    def train_step(self) -> dict[str, str]:
        """One optimisation step; returns the batch's PSNR and the grid size for display."""
        self._maintain_grid()
        decay_rates(self.optimizer, self.config.train.lr_decay, self.step, self.config.train.steps)
        origins, dirs, target = self._random_rays(self.config.train.batch_rays)
        out = render_rays(self.field, self.space, origins, dirs, jitter=True)
        loss, mse = self._loss(out, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"psnr": f"{psnr(mse):.2f}", "voxels": _voxels(self.field)}

    # ----- evaluation and checkpoints ------------------------------------------
    @torch.no_grad()
    def evaluate(self, count: int | None = None) -> float | None:
        """Mean PSNR over the first `count` test views (None: all); None without test views."""
        ids = self.scene.test_ids[:count] if count else self.scene.test_ids
        if not ids:
            return None
        values = []
        for i in ids:
            rendered = render_image(self.field, self.space, self.cameras, i)["rgb"]
            target = self.images[i].float() / 255
            values.append(psnr(float(torch.mean((rendered - target) ** 2))))
        result = sum(values) / len(values)
        self.history.append({"step": self.step, "test_psnr": result, "seconds": self.elapsed})
        return result

    def checkpoint_content(self) -> dict:
        """What a checkpoint of this stage holds (tensors by reference, not copied)."""
        return dict(config=config_to_dict(self.config), step=self.step,
                    field=self.field.state_dict(), optimizer=self.optimizer.state_dict(),
                    history=self.history, elapsed=self.elapsed, rng=torch.get_rng_state())

    def save(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, **self.checkpoint_content())
        return path

    def after_step(self, bar: tqdm) -> None:
        t = self.config.train
        if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
            value = self.evaluate(t.eval_views)
            if value is not None:
                bar.write(f"step {self.step}: test PSNR {value:.2f} dB "
                          f"({self.elapsed:.0f} s of training)")
        if t.checkpoint_every and self.step % t.checkpoint_every == 0:
            self.save()

    def run(self, progress: bool = True, cancel: threading.Event | None = None,
            final_eval: bool = True) -> TrainReport:
        """Train to `train.steps`. Ctrl+C or `cancel` saves a checkpoint, then raises Cancelled.

        final_eval: measure the test PSNR at the end (off when the caller renders the
        test views itself anyway).
        """
        self.run_steps(progress, cancel)
        final = self.evaluate() if final_eval else None
        path = self.save()
        return TrainReport(self.step, self.elapsed, final, self.history, path)


def _voxels(field: RadianceField) -> str:
    return "x".join(str(n) for n in field.resolution)
