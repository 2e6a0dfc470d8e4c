"""A real gunicorn serving the provider for a test: the run command's ``web`` command line on a free
loopback port, against the test database (the test needs ``transactional_db``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from config import run
from tests.conftest import database_url_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """``oauth-provider-run web``'s command line, on a free port, against the test database."""

    def __init__(self, log_path: Path, environment: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = run.service_argv("web", host="127.0.0.1", port=self.port)
        env = run.child_env(
            {
                "DATABASE_URL": database_url_for(connection.settings_dict),
                "OAUTHLIB_INSECURE_TRANSPORT": "1",
                "GUNICORN_CMD_ARGS": "--log-level debug",
                **environment,
            }
        )
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            argv, cwd=run.ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{self.text()}")
            try:
                requests.get(f"{self.url}/static/none", timeout=10, allow_redirects=False)
                return
            except requests.RequestException:
                time.sleep(0.2)
        pytest.fail(f"gunicorn did not answer within {timeout}s:\n{self.text()}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self._log.close()
        return self.text()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")
