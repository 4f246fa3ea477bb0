"""Start-up and shutdown of `isrf serve`.

The socket is bound before uvicorn starts (port 0 picks a free one); once it listens,
exactly one JSON line goes to stdout, e.g.
    {"isrf": "ready", "api": 1, "port": 53411, "token_file": "/.../token-53411"}
so a parent (the add-on) connects without guessing. The token is fresh per start and
written to a 0600 file. SIGTERM / Ctrl+C stop the server: jobs are cancelled (training
saves its checkpoint) before it exits. With --parent-pid it also stops when that process
is gone, so an engine started by Blender is never left orphaned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

from engine.errors import IsrfError
from engine.serve import API_VERSION

PARENT_CHECK_SECONDS = 0.5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    return token


def serve(host: str, port: int, token_file: Path | None, device: str | None,
          state_dir: Path, allow_remote: bool, parent_pid: int | None) -> None:
    import uvicorn

    from engine.serve.app import create_app
    from engine.serve.workspace import Workspace

    if not is_loopback(host) and not allow_remote:
        raise IsrfError(f"--host {host}: not a loopback address; add --allow-remote to serve "
                        "other machines (or use an SSH tunnel: docs/serve.md)")
    if not is_loopback(host):
        print(f"isrf: warning: serving on {host}: anyone who can reach this port and read "
              "the token can drive this engine and read its files", file=sys.stderr)
    if parent_pid is not None and not _alive(parent_pid):
        raise IsrfError(f"--parent-pid {parent_pid}: no such process")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without, a small answer waits ~40 ms for the client's
    # delayed ACK (Nagle), which the API's overhead target cannot afford.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        raise IsrfError(f"--port {port}: cannot listen on {host} ({error.strerror})") from None
    listener.listen(128)
    port = listener.getsockname()[1]
    state_dir = Path(state_dir).expanduser().resolve()
    token_file = Path(token_file or state_dir / f"token-{port}").expanduser().resolve()
    token = write_token(token_file)
    workspace = Workspace(state_dir, device)
    app = create_app(workspace, token)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if not self.should_exit:
                print(json.dumps({"isrf": "ready", "api": API_VERSION, "host": host,
                                  "port": port, "token_file": str(token_file)}), flush=True)

        async def shutdown(self, sockets=None):
            # Here, not after run(): uvicorn re-raises SIGTERM once run() is over.
            await super().shutdown(sockets)
            await asyncio.to_thread(stop_work)

    def stop_work() -> None:
        workspace.shutdown()
        token_file.unlink(missing_ok=True)

    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid, server), daemon=True,
                         name="isrf-parent-watch").start()
    try:
        server.run(sockets=[listener])
    finally:
        stop_work()


def _alive(pid: int) -> bool:
    import psutil
    return psutil.pid_exists(pid)


def _watch_parent(pid: int, server) -> None:
    """Stop the server once the parent is gone (or this process was re-parented)."""
    started_as_child = os.getppid() == pid
    while not server.should_exit:
        if not _alive(pid) or (started_as_child and os.getppid() != pid):
            print(f"isrf: parent process {pid} is gone: stopping", file=sys.stderr)
            server.should_exit = True
            return
        time.sleep(PARENT_CHECK_SECONDS)
