"""Flower's /metrics asks for the same basic auth as its other pages, on the run command's Flower."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess

import pytest
import requests

from config import run
from tests.conftest import wait_until
from tests.gunicorn_server import free_port


@pytest.fixture
def flower(tmp_path, monkeypatch):
    """The run command's ``flower`` service on a free port, with basic auth, on the test broker."""
    port = free_port()
    password = secrets.token_urlsafe(16)
    monkeypatch.setenv("FLOWER_PORT", str(port))
    argv = run.service_argv("flower", host="127.0.0.1", port=8000)
    env = run.child_env({"FLOWER_BASIC_AUTH": f"ops:{password}"})
    log = open(tmp_path / "flower.log", "wb")
    process = subprocess.Popen(
        argv, cwd=run.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"Flower exited: {(tmp_path / 'flower.log').read_text()[-2000:]}")
        try:
            return requests.get(f"{url}/healthcheck", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=60, message="Flower to answer its health check")
    yield url, ("ops", password)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    log.close()


def test_metrics_need_the_basic_auth_of_every_other_page(flower):
    url, credentials = flower

    anonymous = requests.get(f"{url}/metrics", timeout=30)
    wrong = requests.get(f"{url}/metrics", auth=("ops", "guess"), timeout=30)
    allowed = requests.get(f"{url}/metrics", auth=credentials, timeout=30)

    assert anonymous.status_code == 401, anonymous.text[:300]
    assert wrong.status_code == 401
    assert allowed.status_code == 200 and "# HELP" in allowed.text
    assert requests.get(f"{url}/", timeout=30).status_code == 401  # the pages, as before
    assert requests.get(f"{url}/healthcheck", timeout=30).text == "OK"  # open, for health checks
