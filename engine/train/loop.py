"""The step loop both training stages share: progress bar, timing, cancel, checkpoint on
cancel. A stage subclasses `StepLoop` and supplies one step, what follows a step, and save."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from engine import work
from engine.errors import Cancelled


def decaying_adam(groups: list[dict]) -> torch.optim.Adam:
    """Adam over parameter groups whose start rate is kept as `base_lr` (see `decay_rates`)."""
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.Adam(groups, betas=(0.9, 0.99))


def decay_rates(optimizer: torch.optim.Optimizer, decay: float, step: int, steps: int) -> None:
    """Exponential decay: every rate reaches `decay` x its start at `steps`."""
    factor = decay ** (step / steps)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def random_pixels(train_ids: torch.Tensor, height: int, width: int, count: int):
    """`count` random pixels of the training images: image ids, cols, rows (each [count])."""
    device = train_ids.device
    cam = train_ids[torch.randint(len(train_ids), (count,), device=device)]
    rows = torch.randint(height, (count,), device=device)
    cols = torch.randint(width, (count,), device=device)
    return cam, cols, rows


class StepLoop:
    name = "train"
    step: int
    total_steps: int
    elapsed: float
    """Seconds spent in optimisation steps (evaluation and saving excluded)."""

    def train_step(self) -> dict[str, str]:
        """One optimisation step; returns what the progress bar shows."""
        raise NotImplementedError

    def after_step(self, bar: tqdm) -> None:
        """Periodic work after a step (evaluation, checkpoints)."""

    def save(self) -> Path:
        raise NotImplementedError

    def run_steps(self, progress: bool, cancel: threading.Event | None) -> None:
        """Step to `total_steps`. Ctrl+C or `cancel` saves a checkpoint, then raises Cancelled."""
        # Redraw often on a terminal; rarely when stderr is a log file (CI, a pipe).
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress, desc=self.name,
                   unit="step", dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 15)
        try:
            while self.step < self.total_steps:
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                with work.step(self.name, self.step, self.total_steps) as metrics:
                    started = time.perf_counter()
                    shown = self.train_step()
                    self.elapsed += time.perf_counter() - started
                    bar.update(1)
                    bar.set_postfix(shown, refresh=False)  # redrawn at the bar's own interval
                    self.after_step(bar)
                    metrics.update(shown)
        except KeyboardInterrupt:
            bar.close()
            path = self.save()
            raise Cancelled(f"{self.name} cancelled at step {self.step}; resume from {path}") from None
        bar.close()
