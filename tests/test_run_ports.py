"""The run command's ports: chosen with options or environment variables, checked before anything
starts; and a web server that an idle connection does not freeze."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest
import requests

from config.embedded_redis import free_port

from .conftest import ROOT, wait_until
from .test_run_command import run_command


@contextmanager
def listening(port: int):
    """Something else listening on ``port`` of 127.0.0.1."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        yield server


def run(args: list[str], tmp_path, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL", "WEB_PORT")}
    env.update(DATA_DIR=str(tmp_path / "data"), HOST="127.0.0.1", **env_overrides)
    return subprocess.run(
        [*run_command(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_busy_web_port_stops_the_command_before_anything_starts(tmp_path):
    web, flower = free_port(), free_port()
    with listening(web):
        result = run(["--web-port", str(web), "--flower-port", str(flower)], tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"oauth-provider-run: web port {web} on 127.0.0.1 is not free (Address already in use): "
        "choose another with --web-port N (or WEB_PORT=N)"
    ]
    assert "started" not in result.stdout
    assert not (tmp_path / "data" / "db.sqlite3").exists()  # not even the setup ran


def test_a_busy_flower_port_from_the_environment_is_named_without_a_traceback(tmp_path):
    web, flower = free_port(), free_port()
    with listening(flower):
        result = run([], tmp_path, WEB_PORT=str(web), FLOWER_PORT=str(flower))

    assert result.returncode == 2
    assert f"Flower port {flower} on 127.0.0.1 is not free" in result.stderr
    assert "--flower-port N (or FLOWER_PORT=N)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_busy_port_of_one_service_run_alone_is_refused_too(tmp_path):
    web = free_port()
    with listening(web):
        result = run(["web", "--port", str(web)], tmp_path)

    assert result.returncode == 2
    assert f"web port {web}" in result.stderr


def test_web_and_flower_on_one_port_is_refused(tmp_path):
    port = free_port()

    result = run(["--web-port", str(port), "--flower-port", str(port)], tmp_path)

    assert result.returncode == 2
    assert f"Flower and web would both listen on port {port}" in result.stderr


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_a_port_that_is_not_a_port_is_refused_naming_the_option(tmp_path, value):
    result = run(["--web-port", value], tmp_path)

    assert result.returncode == 2
    assert "argument --web-port/--port: must be a port number between 1 and 65535" in result.stderr


def test_an_idle_connection_does_not_hold_up_the_next_request(tmp_path):
    """A browser may open a connection and send nothing; the next request is answered all the same."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(DATA_DIR=str(tmp_path / "data"), HOST="127.0.0.1", WEB_WORKERS="1", WEB_THREADS="2")
    server = subprocess.Popen(
        [*run_command(), "web", "--web-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    idle = []
    try:

        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, timeout=60, message="the web server to answer")
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # open, silent
        time.sleep(0.5)  # let the server accept them

        # gunicorn's default (one sync worker) gives the first idle connection the worker until
        # its 30 s timeout kills it; this request would not be answered within 10 s.
        response = requests.get(f"http://127.0.0.1:{port}/", timeout=10)

        assert response.status_code == 200
    finally:
        for connection in idle:
            connection.close()
        os.killpg(server.pid, 15)
        server.wait(30)
