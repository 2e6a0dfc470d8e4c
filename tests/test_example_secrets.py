"""The compose stack refuses to start with the "change me" passwords of .env.example.

No Docker engine is needed: the postgres and redis commands are taken from docker-compose.yml and
run with ``sh`` (with stand-ins for the servers they start), and every application service's entry
point is run with the environment its container gets from .env.example and the compose file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import run
from tests.conftest import ROOT
from tests.deployment import deployment_environment

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def stand_in(folder: Path, name: str) -> None:
    """A program ``name`` that prints how it was called, instead of the real server."""
    path = folder / name
    path.write_text('#!/bin/sh\necho "started: $0 $*"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_service_command(service: str, program: str, tmp_path: Path, **env: str):
    command = COMPOSE["services"][service]["command"]
    assert command[:2] == ["sh", "-c"], f"{service} runs {command!r}"
    script = command[2].replace("$$", "$")  # Compose's escape of a container-side "$"
    stand_in(tmp_path, program)
    environment = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["sh", "-c", script], env=environment, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "service, variable, program",
    [
        ("postgres", "POSTGRES_PASSWORD", "docker-entrypoint.sh"),
        ("redis", "REDIS_PASSWORD", "redis-server"),
    ],
)
@pytest.mark.parametrize("example", ["change-me", "Change-Me", "changeme", "change_me-please"])
def test_postgres_and_redis_refuse_the_example_password(tmp_path, service, variable, program, example):
    result = run_service_command(service, program, tmp_path, **{variable: example})

    assert result.returncode != 0
    assert f"{variable} is still the example value" in result.stderr
    assert "started:" not in result.stdout


@pytest.mark.parametrize(
    "service, variable, program, expected",
    [
        ("postgres", "POSTGRES_PASSWORD", "docker-entrypoint.sh", "docker-entrypoint.sh postgres"),
        ("redis", "REDIS_PASSWORD", "redis-server", "--requirepass Xk3t9QzR2mP8vL5n"),
    ],
)
def test_postgres_and_redis_start_with_a_real_password(tmp_path, service, variable, program, expected):
    result = run_service_command(service, program, tmp_path, **{variable: "Xk3t9QzR2mP8vL5n"})

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


APP_SERVICES = [
    name for name, s in COMPOSE["services"].items() if (s.get("command") or [None])[0] == "oauth-provider-run"
]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_application_service_refuses_the_example_passwords(tmp_path, service):
    env = deployment_environment(tmp_path, service, examples=True)
    env.update(HOST="127.0.0.1", PORT="0", FLOWER_ADDRESS="127.0.0.1", PATH=os.environ["PATH"])
    entry_point = COMPOSE["services"][service]["command"][1]

    result = subprocess.run(
        [sys.executable, "-m", "config.run", entry_point],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    for named in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert named in result.stderr, result.stderr
    if service == "flower":
        assert "FLOWER_BASIC_AUTH: the password of 'admin' is still the example value" in result.stderr


def test_no_password_of_the_deployment_is_reported_once_set(tmp_path):
    env = deployment_environment(tmp_path, "flower")

    assert run.example_value_errors(env) == []
