"""A local engine process: started with `isrf serve --port 0`, connected through the one
ready line it prints, its log kept in a file, stopped (and never orphaned: it watches
its parent with --parent-pid) when its owner is done. Stdlib only (Blender's Python).

    engine = EngineProcess.start([".venv/bin/isrf"], state_dir, log_path)
    engine.client.health()
    engine.stop()
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from .client import EngineClient, EngineError, EngineUnavailable

READY_TIMEOUT_SECONDS = 120.0
"""How long a fresh engine may take to import torch and listen (a cold disk is slow)."""
STOP_TIMEOUT_SECONDS = 30.0


class EngineProcess:
    def __init__(self, process: subprocess.Popen, client: EngineClient, ready: dict,
                 log_path: Path):
        self.process, self.client, self.log_path = process, client, log_path
        self.ready = ready
        """The ready line: {"isrf": "ready", "api", "host", "port", "token_file"}."""

    @classmethod
    def start(cls, command: list[str], state_dir: str | Path, log_path: str | Path,
              device: str | None = None, parent_pid: int | None = None,
              ready_timeout: float = READY_TIMEOUT_SECONDS,
              env: dict[str, str] | None = None) -> "EngineProcess":
        """Start `command serve ...` (command: e.g. ["/path/.venv/bin/isrf"] or
        [python, "-m", "engine.cli"]) and wait for its ready line; EngineUnavailable
        with the log's tail if it exits or stays silent."""
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        arguments = [*command, "serve", "--port", "0", "--state-dir", str(state_dir),
                     "--parent-pid", str(parent_pid or os.getpid())]
        if device:
            arguments += ["--device", device]
        log = open(log_path, "ab")
        try:
            process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=log,
                                       stdin=subprocess.DEVNULL, env=env)
        except OSError as error:
            log.close()
            raise EngineUnavailable(0, f"cannot start the engine {command[0]!r}: {error.strerror}") from None
        log.close()   # the child holds its own descriptor
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_read_stdout, args=(process, lines, log_path), daemon=True,
                         name="isrf-engine-stdout").start()
        try:
            line = lines.get(timeout=ready_timeout)
        except queue.Empty:
            line = None
        if line is None:
            _terminate(process)
            raise EngineUnavailable(0, f"the engine did not start (exit code {process.poll()}): "
                                       f"{_tail(log_path)}")
        try:
            client = EngineClient.from_ready_line(line)
        except EngineError:
            _terminate(process)
            raise
        return cls(process, client, json.loads(line), log_path)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM (jobs are cancelled and checkpointed), then SIGKILL after `timeout`;
        returns the exit code."""
        self.client.close()
        return _terminate(self.process, timeout)


def _read_stdout(process: subprocess.Popen, lines: queue.Queue, log_path: Path) -> None:
    """The first line is the ready line; later stdout goes to the log."""
    first = process.stdout.readline()
    lines.put(first.decode("utf-8", "replace").strip() if first else None)
    with open(log_path, "ab") as log:
        for line in process.stdout:
            log.write(line)
            log.flush()


def _terminate(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(the log is empty)"
