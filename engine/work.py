"""The steps of long operations, as a job runner sees them.

Training, distillation, feature extraction and refinement wrap each of their steps in
`step(...)`. Outside a job it does nothing. Inside one (the server's job worker installs
`StepHooks` for its thread with `running`), each step holds the compute device while it
runs, so interactive renders and strokes get the device between two steps, and each
finished step reports the job's progress. The hooks are a context variable rather than
an argument so that the library's signatures stay those the CLI uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Protocol


class StepHooks(Protocol):
    def device(self) -> AbstractContextManager:
        """Held while one step computes (the shared device)."""

    def report(self, stage: str, done: int, total: int, metrics: dict) -> None:
        """`done` of `total` steps of `stage` are finished; `metrics`: what a bar would show."""


_hooks: ContextVar[StepHooks | None] = ContextVar("isrf_step_hooks", default=None)


@contextmanager
def running(hooks: StepHooks) -> Iterator[None]:
    """Run the block as a job: its operations' steps go through `hooks`."""
    token = _hooks.set(hooks)
    try:
        yield
    finally:
        _hooks.reset(token)


@contextmanager
def step(stage: str, done: int, total: int) -> Iterator[dict]:
    """One step of `stage` (`done` of `total` finished before it): holds the device while
    the block runs, then reports done + 1 with the metrics the block put in the dict it
    was given. Does nothing outside a job."""
    metrics: dict = {}
    hooks = _hooks.get()
    if hooks is None:
        yield metrics
        return
    with hooks.device():
        yield metrics
    hooks.report(stage, done + 1, total, metrics)
