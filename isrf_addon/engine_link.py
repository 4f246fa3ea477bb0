"""The add-on's one link to an engine, and the worker thread that talks to it.

Blender's UI thread never waits on the network: operators `submit` a call (a function
of the client), one worker thread runs the calls in order, and `deliver`, run by a
`bpy.app.timers` timer on the UI thread, hands each result (or error) to its callback.
No bpy here, so the link is tested without Blender too.

States: "stopped" (no engine), "starting", "connected", "failed" (`message` says what to
do). A local engine is this process's child (`EngineProcess`, started with
`--parent-pid`, so it dies with Blender); a remote one is only connected to.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from .client import EngineClient, EngineError
from .engine_process import EngineProcess

Callback = Callable[[object], None]


class EngineLink:
    def __init__(self):
        self.state = "stopped"
        self.message = "no engine: start one or connect"
        self.engine: EngineProcess | None = None
        self.client: EngineClient | None = None
        self.health: dict = {}
        self._calls: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    # ----- the engine -------------------------------------------------------------
    def start_local(self, command: list[str], state_dir: Path, log_path: Path,
                    device: str | None, on_done: Callback | None = None) -> None:
        """Start a local engine (on the worker: importing torch takes seconds)."""
        self.stop(wait=False)
        self.state, self.message = "starting", f"starting the engine ({' '.join(command)})"

        def start(_client) -> dict:
            engine = EngineProcess.start(command, state_dir, log_path, device=device)
            try:
                health = engine.client.check_version()
            except EngineError:
                engine.stop()
                raise
            self.engine, self.client = engine, engine.client
            return health

        self.submit(start, lambda health: self._connected(health, on_done), self._failed,
                    needs_client=False)

    def connect(self, host: str, port: int, token: str, on_done: Callback | None = None) -> None:
        """Connect to a running engine (a remote one, or one started by hand)."""
        self.stop(wait=False)
        self.state, self.message = "starting", f"connecting to {host}:{port}"
        client = EngineClient(host, port, token, timeout=30.0)

        def connect(_client) -> dict:
            health = client.check_version()
            self.client = client
            return health

        self.submit(connect, lambda health: self._connected(health, on_done), self._failed,
                    needs_client=False)

    def stop(self, wait: bool = True) -> None:
        """Stop a local engine (SIGTERM: its jobs are checkpointed) or drop a remote one.
        wait: until the engine has exited (the add-on being disabled, Blender quitting);
        False (an operator): it exits on a thread, the UI goes on."""
        engine, self.engine, self.client = self.engine, None, None
        if engine is not None:
            if wait:
                engine.stop()
            else:
                threading.Thread(target=engine.stop, name="isrf-addon-stop", daemon=True).start()
        self.state, self.message, self.health = "stopped", "no engine: start one or connect", {}

    @property
    def log_path(self) -> Path | None:
        return self.engine.log_path if self.engine else None

    def check_alive(self) -> None:
        """Notice a local engine that died (the panel then says so)."""
        if self.engine is not None and not self.engine.running:
            code = self.engine.process.poll()
            self.engine, self.client = None, None
            self.state = "failed"
            self.message = f"the engine exited (code {code}); see its log, then start it again"

    def _connected(self, health: dict, on_done: Callback | None) -> None:
        self.health = health
        self.state = "connected"
        self.message = f"engine {health.get('version')} on {health.get('device')}"
        if on_done:
            on_done(health)

    def _failed(self, error: Exception) -> None:
        self.state, self.message = "failed", str(error)

    # ----- calls --------------------------------------------------------------------
    def submit(self, call: Callable[[EngineClient], object], on_done: Callback | None = None,
               on_error: Callable[[Exception], None] | None = None,
               needs_client: bool = True) -> None:
        """Run `call(client)` on the worker; `on_done(result)` or `on_error(error)` run
        later on the UI thread, in `deliver`."""
        if needs_client and self.client is None:
            raise EngineError(0, "no engine: start one or connect (ISRF tab, Engine)")
        self._ensure_worker()
        self._calls.put((call, on_done, on_error))

    def follow_job(self, job_id: str, on_update: Callback) -> None:
        """Follow a job on a thread of its own (long-polls, so strokes on the worker are
        not held up); `on_update(snapshot)` runs on the UI thread for each new version,
        the last one finished."""
        client = self.client
        if client is None:
            raise EngineError(0, "no engine: start one or connect (ISRF tab, Engine)")

        def follow() -> None:
            try:
                client.wait_job(job_id, on_update=lambda snapshot: self._results.put((on_update, snapshot)))
            except EngineError as error:   # JobFailed: its last snapshot was delivered
                if not hasattr(error, "job"):
                    self._results.put((self._failed, error))
            finally:
                client.close()

        threading.Thread(target=follow, name=f"isrf-addon-job-{job_id}", daemon=True).start()

    def pending(self) -> int:
        return self._calls.qsize()

    def busy(self) -> bool:
        """Calls submitted whose answers are not delivered yet (the timer then runs often,
        so an answer is shown as soon as it comes, not up to a slow tick later)."""
        return self._calls.unfinished_tasks > 0 or not self._results.empty()

    def deliver(self, limit: int = 16) -> int:
        """Run the callbacks of finished calls (UI thread); returns how many ran."""
        count = 0
        while count < limit:
            try:
                callback, value = self._results.get_nowait()
            except queue.Empty:
                break
            if callback is not None:
                try:
                    callback(value)
                except Exception as error:   # a bug of ours: shown, and the timer lives on
                    self.message = f"add-on error while applying an answer: {error!r}"
            count += 1
        return count

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="isrf-addon-engine", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            call, on_done, on_error = self._calls.get()
            try:
                value = call(self.client)
            except Exception as error:   # every failure goes to the UI as a message
                self._results.put((on_error or self._failed, error))
            else:
                self._results.put((on_done, value))
            self._calls.task_done()   # after the answer is queued: busy() never misses it
