"""The compute device shared by interactive calls and long jobs, and the job worker.

One device, one owner at a time (`DeviceGate`): renders and strokes take it for their
whole call and go first; a long job (training, features, distillation, refinement,
meshing) takes it one step at a time (engine/work.py), so an interactive call waits at
most one step. Jobs run one after another on one worker thread, in submission order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from engine import work
from engine.errors import Cancelled, IsrfError

log = logging.getLogger("isrf.serve")


class DeviceGate:
    """Exclusive use of the compute device. A waiting interactive call goes before a
    waiting job step, except right after another interactive call: then the step goes,
    so a stream of renders cannot starve a job, and a stroke waits at most one step."""

    def __init__(self):
        self._free = threading.Condition()
        self._busy = False
        self._interactive_waiting = 0
        self._job_waiting = False
        self._job_turn = False
        """The last holder was an interactive call and a job step is waiting."""

    @contextmanager
    def interactive(self) -> Iterator[None]:
        with self._free:
            self._interactive_waiting += 1
            while self._busy or (self._job_turn and self._job_waiting):
                self._free.wait()
            self._interactive_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release(job_turn=True)

    @contextmanager
    def job_step(self) -> Iterator[None]:
        with self._free:
            self._job_waiting = True
            while self._busy or (self._interactive_waiting and not self._job_turn):
                self._free.wait()
            self._job_waiting = False
            self._busy = True
        try:
            yield
        finally:
            self._release(job_turn=False)

    def _release(self, job_turn: bool) -> None:
        with self._free:
            self._busy = False
            self._job_turn = job_turn and self._job_waiting
            self._free.notify_all()


KINDS = ("train", "features", "distill", "refine", "mesh")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Job:
    kind: str
    scene: str
    segment: str | None
    run: Callable[[threading.Event], dict]
    """The work: called on the worker thread with the cancel event; returns the result."""
    release: Callable[[], None] = lambda: None
    """Called once the job ends, however it ends (even cancelled before it started),
    before its final state is published: frees what it owned."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"
    stage: str = ""
    progress: float = 0.0
    eta_seconds: float | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    result: dict | None = None
    payload: object = None
    """A large result kept for its own download (a mesh), not part of `snapshot`."""
    version: int = 0
    """Bumped on every change; long-polls wait for a version above the one they saw."""
    cancel: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.time)
    _stage_start: tuple[float, int] = (0.0, 0)

    def snapshot(self) -> dict:
        return {"id": self.id, "kind": self.kind, "scene": self.scene, "segment": self.segment,
                "state": self.state, "stage": self.stage, "progress": self.progress,
                "eta_seconds": self.eta_seconds, "metrics": self.metrics, "error": self.error,
                "result": self.result, "version": self.version,
                "cancel_requested": self.cancel.is_set()}


class JobRunner:
    """Runs jobs on one worker thread; reports and long-polls through one condition."""

    def __init__(self, gate: DeviceGate):
        self.gate = gate
        self.jobs: dict[str, Job] = {}
        self._changed = threading.Condition()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="isrf-jobs", daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> Job:
        with self._changed:
            self.jobs[job.id] = job
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def active(self, scene: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.scene == scene and j.state not in FINISHED]

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        self._update(job)

    def wait(self, job: Job, after_version: int, timeout: float) -> dict:
        """The job's snapshot once its version is above `after_version`, or when it
        finishes, or after `timeout` seconds (whichever comes first)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while job.version <= after_version and job.state not in FINISHED:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return job.snapshot()

    def shutdown(self, timeout: float = 60.0) -> None:
        """Cancel every job (a training stage saves its checkpoint) and stop the worker."""
        for job in list(self.jobs.values()):
            if job.state not in FINISHED:
                job.cancel.set()
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout)

    # ----- the worker -------------------------------------------------------------
    def _update(self, job: Job, **changes) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(job, key, value)
            job.version += 1
            self._changed.notify_all()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            final = self._run(job)
            job.release()
            self._update(job, **final)

    def _run(self, job: Job) -> dict:
        """The job's final fields (state, result or error)."""
        if job.cancel.is_set():
            return {"state": "cancelled", "error": "cancelled before it started"}
        self._update(job, state="running", stage=job.kind)
        try:
            with work.running(_Hooks(self, job)):
                result = job.run(job.cancel)
            return {"state": "done", "progress": 1.0, "eta_seconds": 0.0, "result": result}
        except Cancelled as error:
            return {"state": "cancelled", "error": str(error)}
        except IsrfError as error:
            return {"state": "failed", "error": str(error)}
        except Exception as error:   # a bug: kept in the log with its traceback
            log.error("job %s (%s) failed:\n%s", job.id, job.kind, traceback.format_exc())
            return {"state": "failed", "error": f"internal error: {error!r}"}


class _Hooks:
    """engine/work.py's hooks for one job: the gate per step, progress and ETA."""

    def __init__(self, runner: JobRunner, job: Job):
        self.runner, self.job = runner, job

    def device(self):
        return self.runner.gate.job_step()

    def report(self, stage: str, done: int, total: int, metrics: dict) -> None:
        job, now = self.job, time.monotonic()
        if stage != job.stage or job._stage_start == (0.0, 0):
            job._stage_start = (now, done - 1)
        started, first = job._stage_start
        rate = (done - first) / max(now - started, 1e-9)
        eta = (total - done) / rate if done > first else None
        self.runner._update(job, stage=stage, progress=done / max(total, 1), eta_seconds=eta,
                            metrics={**job.metrics, **{k: str(v) for k, v in metrics.items()}})
