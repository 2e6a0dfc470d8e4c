"""The run command: everything on the embedded default, stopped cleanly; one service by name.

These start ``oauth-provider-run`` as a real process with its own data folder and its own Redis
(``CELERY_BROKER_URL`` removed from its environment), talk to it over HTTP and the broker, and
check that after a Ctrl-C nothing it started is left running or listening.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from config.embedded_redis import free_port

from .conftest import ROOT, wait_until

pytestmark = pytest.mark.worker

STARTUP_TIMEOUT = 120.0


def run_command() -> list[str]:
    script = Path(sys.executable).parent / "oauth-provider-run"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "config.run"]


class RunProcess:
    """``oauth-provider-run`` in its own session, its output captured to a file."""

    def __init__(self, tmp_path: Path, args: list[str] = (), **env_overrides: str) -> None:
        self.web_port = free_port()
        self.flower_port = free_port()
        self.redis_port = free_port()
        env = dict(os.environ)
        # The embedded default: no broker, no result backend, no database server configured.
        for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL"):
            env.pop(name, None)
        self.data_dir = tmp_path / "data"
        env.update(
            DATA_DIR=str(self.data_dir),
            HOST="127.0.0.1",
            PORT=str(self.web_port),
            FLOWER_PORT=str(self.flower_port),
            EMBEDDED_REDIS_PORT=str(self.redis_port),
            RUN_STOP_TIMEOUT="30",
        )
        env.update(env_overrides)
        self.logfile = tmp_path / "run.log"
        self._log = open(self.logfile, "wb")
        self.process = subprocess.Popen(
            [*run_command(), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def output(self) -> str:
        self._log.flush()
        return self.logfile.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"oauth-provider-run exited with {self.process.returncode}:\n{self.output()}")
        return True

    def child_pids(self) -> dict[str, int]:
        """Every process the command said it started, by name (``redis`` for the broker)."""
        pids = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", self.output())}
        match = re.search(r"embedded Redis at \S+ \(pid (\d+)", self.output())
        if match:
            pids["redis"] = int(match.group(1))
        return pids

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.child_pids().values():
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self._log.close()


@pytest.fixture
def run_process(tmp_path):
    started: list[RunProcess] = []

    def start(*args: str, **env: str) -> RunProcess:
        run = RunProcess(tmp_path, list(args), **env)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def http_status(url: str, **kwargs) -> int | None:
    try:
        return requests.get(url, timeout=2, **kwargs).status_code
    except requests.RequestException:
        return None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def processes_in_session(session_id: int) -> list[int]:
    """PIDs of live processes whose session is ``session_id`` (a child and everything it forked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == session_id and state != "Z":
            found.append(int(entry.name))
    return found


def worker_pong(broker_url: str) -> str | None:
    """``celery inspect ping`` against ``broker_url``: its output when a worker answered."""
    # A process of its own: Celery prefers CELERY_BROKER_URL from the environment (here the test
    # session's broker) over any URL configured in code.
    env = dict(os.environ, CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=broker_url)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "inspect", "ping", "--timeout", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout if result.returncode == 0 and "pong" in result.stdout else None


def test_run_starts_web_worker_beat_and_flower_on_embedded_redis_and_sigint_stops_all(run_process):
    run = run_process(FLOWER_BASIC_AUTH="ops:s3cret")

    login = f"http://127.0.0.1:{run.web_port}/admin/login/"
    wait_until(
        lambda: run.alive() and http_status(login) == 200, STARTUP_TIMEOUT, 0.5, "the admin login page"
    )
    flower = f"http://127.0.0.1:{run.flower_port}/"
    wait_until(
        lambda: run.alive() and http_status(flower, auth=("ops", "s3cret")) == 200,
        STARTUP_TIMEOUT,
        0.5,
        "Flower to answer",
    )
    assert http_status(flower) == 401, "Flower must ask for the basic auth credentials"
    pong = wait_until(
        lambda: run.alive() and worker_pong(run.broker_url), STARTUP_TIMEOUT, 0.5, "worker ping"
    )
    assert "worker@" in pong

    # A cleanup dispatched from another shell (no broker URL in its environment: the run command
    # recorded its Redis in the data folder) runs on this stack's worker and shows in Flower.
    assert (run.data_dir / "broker_url").read_text().strip() == run.broker_url
    env = dict(os.environ, DATA_DIR=str(run.data_dir))
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL"):
        env.pop(name, None)
    dispatched = subprocess.run(
        [sys.executable, "manage.py", "cleartokens", "--async"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dispatched.returncode == 0, dispatched.stderr

    def flower_shows_the_cleanup_batch():
        response = requests.get(
            f"{flower}api/tasks",
            params={"taskname": "oauth_tasks.run_batch"},
            auth=("ops", "s3cret"),
            timeout=2,
        )
        tasks = response.json().values() if response.status_code == 200 else []
        return [t for t in tasks if t.get("state") == "SUCCESS" and "job=cleanup" in (t.get("args") or "")]

    assert wait_until(flower_shows_the_cleanup_batch, 60, 0.5, "the cleanup batch in Flower")

    pids = run.child_pids()
    assert set(pids) == {"redis", "setup", "web", "worker", "beat", "flower"}
    output = run.output()
    for name in ("setup", "web", "worker", "beat", "flower"):
        assert re.search(rf"^{name}\s* \| ", output, re.MULTILINE), f"no prefixed output line of {name}"
    assert "DatabaseScheduler" in output

    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(90) == 0, run.output()

    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], (
            f"{name} (pid {pid}) still runs"
        )
        if name != "redis":
            assert processes_in_session(pid) == [], f"processes of {name} left running"
    for port in (run.web_port, run.flower_port, run.redis_port):
        assert not port_open(port), f"port {port} still open"
    assert "stopped" in run.output().splitlines()[-1]
    assert not (run.data_dir / "broker_url").exists()


def test_a_service_that_dies_is_restarted_and_one_that_keeps_dying_stops_the_rest(run_process):
    run = run_process("--no-flower", "--no-beat", RUN_RESTART_LIMIT="1")
    login = f"http://127.0.0.1:{run.web_port}/"
    wait_until(lambda: run.alive() and http_status(login) == 200, STARTUP_TIMEOUT, 0.5, "the web server")
    pids = run.child_pids()
    assert "beat" not in pids and "flower" not in pids

    # Killed once (an OOM kill, a crash): started again, the rest of the stack untouched.
    os.kill(pids["worker"], signal.SIGKILL)
    wait_until(
        lambda: run.alive() and run.child_pids()["worker"] != pids["worker"],
        60,
        0.2,
        "the worker to be started again",
    )
    assert "worker exited with code -9; restarting it in 1s" in run.output()
    assert run.child_pids()["web"] == pids["web"] and http_status(login) == 200
    wait_until(lambda: run.alive() and worker_pong(run.broker_url), STARTUP_TIMEOUT, 0.5, "the new worker")

    # Killed again within the window, past RUN_RESTART_LIMIT: a crash loop stops everything.
    os.kill(run.child_pids()["worker"], signal.SIGKILL)
    assert run.process.wait(90) != 0
    assert "worker exited unexpectedly" in run.output()
    assert not port_open(run.web_port)
    assert not port_open(run.redis_port)
    assert processes_in_session(pids["web"]) == []


def test_a_restart_limit_that_is_not_a_number_is_refused_before_anything_starts(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path), RUN_RESTART_LIMIT="many")
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [*run_command(), "--no-flower"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "RUN_RESTART_LIMIT must be a whole number of restarts, got 'many'" in result.stderr


def test_unknown_service_name_exits_non_zero_naming_it():
    result = subprocess.run([*run_command(), "webb"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown service 'webb'" in result.stderr
    assert "web, worker, beat, flower" in result.stderr


def test_flower_refuses_to_listen_beyond_loopback_without_authentication():
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    env["FLOWER_ADDRESS"] = "0.0.0.0"
    result = subprocess.run(
        [*run_command(), "flower"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_each_service_command_line_comes_from_the_one_table():
    from config.run import SERVICES, service_argv

    assert set(SERVICES) == {"web", "worker", "beat", "flower"}
    assert service_argv("web", host="0.0.0.0", port=8000)[1:5] == ["-m", "gunicorn", "config.wsgi", "--bind"]
    assert "0.0.0.0:8000" in service_argv("web", host="0.0.0.0", port=8000)
    assert "runserver" in service_argv("web", host="127.0.0.1", port=8000, dev=True)
    assert "maintenance,celery" in service_argv("worker", host="127.0.0.1", port=8000)
