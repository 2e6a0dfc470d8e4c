"""The replica-lag brake against a real replica: PostgreSQL streaming, MariaDB binlog replication.

Each test gets a primary and its replica of its own, on free ports, removed afterwards; the shared
database servers are not touched. PostgreSQL's pair comes from ``pg_createcluster`` (the standby
from ``pg_basebackup -R``) and lags by an apply delay (``recovery_min_apply_delay``); MariaDB's is
two ``mariadbd`` processes on their own data directories, the second replicating from the first
(GTID), and lags by ``MASTER_DELAY``. The project (migrate, seed, dispatch) and a real worker run
against the primary, with the replica as ``REPLICA_DATABASE_URL``: the paced run must wait, saying
why, without deleting anything, and finish by itself once the delay is lifted.

Each server's pair runs in that server's pass of the suite (it uses the same installation).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, WorkerProcess, wait_until

pytestmark = [pytest.mark.worker]

DATABASE = "oauth_pacing_lag"
PG_ROOT = Path("/usr/lib/postgresql")


@dataclass
class Replication:
    """A PostgreSQL primary and its streaming standby."""

    version: str
    primary_port: int
    replica_port: int

    def url(self, port: int) -> str:
        return f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"

    def create_database(self) -> None:
        self.sql(self.primary_port, f"CREATE DATABASE {DATABASE}", dbname="postgres")

    def delay_replica(self, on: bool) -> None:
        """The standby applies every commit an hour late (``on``), or at once again."""
        if on:
            self.sql(self.replica_port, "ALTER SYSTEM SET recovery_min_apply_delay = '1h'", dbname="postgres")
        else:
            self.sql(self.replica_port, "ALTER SYSTEM RESET recovery_min_apply_delay", dbname="postgres")
        self.sql(self.replica_port, "SELECT pg_reload_conf()", dbname="postgres")

    def commit_on_primary(self) -> None:
        self.sql(self.primary_port, "CREATE TABLE lag_marker (at timestamptz DEFAULT now())")

    def replica_lag(self) -> float:
        return float(self.sql(self.replica_port, STANDBY_LAG)[0][0] or 0)

    def run_row(self, run_id: int) -> dict:
        """Status, pacing and counts of a maintenance run, read on the primary."""
        status, pacing, counts = self.sql(
            self.primary_port,
            "SELECT status, pacing, counts FROM oauth_tasks_maintenancerun WHERE id = %s",
            [run_id],
        )[0]
        load = lambda value: json.loads(value) if isinstance(value, str) else value  # noqa: E731
        return {"status": status, "pacing": load(pacing), "counts": load(counts)}

    def sql(self, port: int, statement: str, params=(), dbname: str = DATABASE):
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname=dbname, autocommit=True
        ) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else None


def _free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {start}")


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@pytest.fixture
def streaming_replica():
    """A PostgreSQL primary and its streaming standby, both this test's own; dropped at teardown."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the replica-lag test runs in the PostgreSQL pass (DATABASE_URL=postgres://...)")
    if shutil.which("pg_createcluster") is None:
        pytest.skip("pg_createcluster is not installed (Debian's postgresql-common): no replica to lag")
    if os.geteuid() != 0:
        pytest.skip("pg_createcluster needs root to create the test's primary and replica clusters")
    versions = sorted(
        (p.name for p in PG_ROOT.iterdir() if (p / "bin" / "pg_basebackup").exists()), key=float
    )
    if not versions:
        pytest.skip(f"no PostgreSQL server binaries under {PG_ROOT}")
    version = versions[-1]
    # Each test process probes its own range: two processes probing the same one at once found
    # the same port free, and the second cluster could not bind it.
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    primary_port = _free_port(5498 + 20 * worker)
    replica_port = _free_port(primary_port + 1)
    suffix = uuid.uuid4().hex[:6]
    primary, replica = f"pacing_primary_{suffix}", f"pacing_replica_{suffix}"
    created: list[str] = []
    small = ["-o", "fsync=off", "-o", "shared_buffers=32MB", "-o", "max_connections=40"]
    try:
        _run("pg_createcluster", version, primary, "-p", str(primary_port), *small, "--", "--auth=trust")
        created.append(primary)
        _run("pg_ctlcluster", version, primary, "start")
        _run("pg_createcluster", version, replica, "-p", str(replica_port), *small, "--", "--auth=trust")
        created.append(replica)
        data = Path(f"/var/lib/postgresql/{version}/{replica}")
        for child in data.iterdir():  # pg_basebackup fills the emptied directory, owned by postgres
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        basebackup = str(PG_ROOT / version / "bin" / "pg_basebackup")
        _run(
            "runuser", "-u", "postgres", "--", basebackup, "-h", "127.0.0.1", "-p", str(primary_port),
            "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        _run("pg_ctlcluster", version, replica, "start")
        yield Replication(version, primary_port, replica_port)
    finally:
        for name in reversed(created):
            subprocess.run(["pg_dropcluster", version, name, "--stop"], capture_output=True, timeout=120)


@dataclass
class MariaDBReplication:
    """Two ``mariadbd`` processes: a primary writing a binary log and a replica of it (GTID)."""

    primary_port: int
    replica_port: int

    def url(self, port: int) -> str:
        return f"mysql://root@127.0.0.1:{port}/{DATABASE}"

    def run_row(self, run_id: int) -> dict:
        return Replication.run_row(self, run_id)

    def sql(self, port: int, statement: str, params=(), dbname: str = DATABASE, *, named: bool = False):
        """The rows of ``statement``; as dicts by column name with ``named``."""
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="", database=dbname)
        try:
            conn.autocommit(True)
            cursor = conn.cursor()
            cursor.execute(statement, params or None)
            if not cursor.description:
                return None
            if named:
                columns = [column[0] for column in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            return list(cursor.fetchall())
        finally:
            conn.close()

    def create_database(self) -> None:
        self.sql(self.primary_port, f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4", dbname="mysql")

    def delay_replica(self, on: bool) -> None:
        """The replica applies every event an hour after the primary wrote it (``on``), or at once."""
        delay = 3600 if on else 0
        for statement in ("STOP SLAVE", f"CHANGE MASTER TO MASTER_DELAY = {delay}", "START SLAVE"):
            self.sql(self.replica_port, statement, dbname="mysql")

    def commit_on_primary(self) -> None:
        self.sql(self.primary_port, "CREATE TABLE lag_marker (at timestamp DEFAULT current_timestamp)")

    def replica_lag(self) -> float:
        rows = self.sql(self.replica_port, "SHOW REPLICA STATUS", dbname="mysql", named=True)
        return float(rows[0]["Seconds_Behind_Master"] or 0) if rows else 0.0


def _mariadbd() -> str | None:
    return shutil.which("mariadbd", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


@pytest.fixture
def mariadb_replica():
    """A MariaDB primary and its replica, both this test's own; stopped and deleted at teardown."""
    from django.db import connection

    if connection.vendor != "mysql":
        pytest.skip("the MariaDB replica-lag test runs in the MariaDB pass (DATABASE_URL=mysql://...)")
    server = _mariadbd()
    if server is None or shutil.which("mariadb-install-db") is None:
        pytest.skip("mariadbd or mariadb-install-db is not installed: no replica to lag")
    if os.geteuid() != 0:
        pytest.skip("the test's servers run as the mysql user, which needs root to arrange")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    primary_port = _free_port(3396 + 20 * worker)
    replica_port = _free_port(primary_port + 1)
    base = Path(tempfile.mkdtemp(prefix="pacing-mariadb-"))
    base.chmod(0o755)
    shutil.chown(base, "mysql", "mysql")
    servers: list[subprocess.Popen] = []
    pair = MariaDBReplication(primary_port, replica_port)
    try:
        for server_id, port in ((1, primary_port), (2, replica_port)):
            data = base / f"server{server_id}"
            _run(
                "mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
                "--auth-root-authentication-method=normal", "--skip-test-db",
            )  # fmt: skip
            argv = [
                server, "--no-defaults", f"--datadir={data}", "--user=mysql", f"--port={port}",
                "--bind-address=127.0.0.1", f"--socket={base}/server{server_id}.sock",
                f"--pid-file={base}/server{server_id}.pid", f"--log-error={base}/server{server_id}.err",
                f"--server-id={server_id}", "--innodb-buffer-pool-size=32M", "--skip-name-resolve",
                *([f"--log-bin={data}/binlog"] if server_id == 1 else []),
            ]  # fmt: skip
            servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        for port, process in zip((primary_port, replica_port), servers, strict=True):
            while True:
                try:
                    pair.sql(port, "SELECT 1", dbname="mysql")
                    break
                except Exception:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = next(base.glob("*.err"), None)
                        raise RuntimeError(f"mariadbd on {port} did not start; see {log}") from None
                    time.sleep(0.2)
        pair.sql(
            replica_port,
            f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary_port},"
            " MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos",
            dbname="mysql",
        )
        pair.sql(replica_port, "START SLAVE", dbname="mysql")
        yield pair
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["postgresql", "mariadb"])
def replica_pair(request):
    """A primary and a replica of the server of this pass of the suite (the other is skipped)."""
    name = "streaming_replica" if request.param == "postgresql" else "mariadb_replica"
    return request.getfixturevalue(name)


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


SEED = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from oauth_provider.models import get_application_model, get_grant_model
now = timezone.now()
user = get_user_model().objects.create(username="lag")
app = get_application_model().objects.create(name="lag", client_type="public",
    authorization_grant_type="authorization-code", redirect_uris="https://example.com/cb")
Grant = get_grant_model()
Grant.objects.bulk_create(Grant(user=user, application=app, code=f"expired-{i}", redirect_uri="https://example.com/cb",
    expires=now - timedelta(hours=1)) for i in range(30))
Grant.objects.bulk_create(Grant(user=user, application=app, code=f"live-{i}", redirect_uri="https://example.com/cb",
    expires=now + timedelta(hours=1)) for i in range(5))
"""

DISPATCH = """
from oauth_tasks.engine import dispatch
run, _ = dispatch("cleanup", {"only": "grants"}, trigger="test", batch_size=10,
    pacing={"max_replica_lag": 2, "lag_recheck_seconds": 1, "target_batch_seconds": 300})
print(run.pk)
"""

STANDBY_LAG = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
"""


def _seeded_primary(cluster) -> dict[str, str]:
    """The project's schema and ``SEED`` on the primary, once the replica has them too; the
    environment of a process of the project on that primary (``REPLICA_DATABASE_URL`` set)."""
    primary, replica = cluster.primary_port, cluster.replica_port
    cluster.create_database()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=cluster.url(primary),
        REPLICA_DATABASE_URL=cluster.url(replica),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="INFO",
    )
    _manage(env, "migrate", "--no-input", "-v", "0")
    _manage(env, "shell", "-c", SEED)
    wait_until(
        lambda: cluster.sql(replica, "SELECT count(*) FROM oauth_provider_grant")[0][0] == 35,
        timeout=60,
        message="the replica to catch up with the seed",
    )
    return env


def test_a_paced_run_waits_while_the_replica_lags_and_resumes_by_itself(
    replica_pair, celery_app, redis_client, tmp_path
):
    cluster = replica_pair
    primary = cluster.primary_port
    env = _seeded_primary(cluster)

    # The replica now applies every commit an hour late; one more commit on the primary makes it lag.
    cluster.delay_replica(True)
    cluster.commit_on_primary()
    wait_until(lambda: cluster.replica_lag() > 3, timeout=60, message="the replica to lag")

    redis_client.flushdb()
    worker = WorkerProcess(env, tmp_path, "maintenance,celery", 1)
    try:
        worker.wait_ready(celery_app)
        run_id = int(_manage(env, "shell", "-c", DISPATCH).strip().splitlines()[-1])

        # It waits, says why, and looks again by itself (several times) without deleting anything.
        wait_until(
            lambda: cluster.run_row(run_id)["pacing"].get("waits", 0) >= 3,
            timeout=60,
            message="the run to wait on the lag",
        )
        waiting = cluster.run_row(run_id)
        assert waiting["status"] == "running"
        assert waiting["pacing"]["waiting"] is True
        assert waiting["pacing"]["reason"].startswith("replica lag ")
        assert waiting["pacing"]["reason"].endswith(" s > 2 s")
        assert waiting["pacing"]["replica_lag"] > 2
        assert waiting["counts"].get("grants", 0) == 0
        assert cluster.sql(primary, "SELECT count(*) FROM oauth_provider_grant")[0][0] == 35

        # Lift the delay: the replica catches up, and the run carries on and finishes on its own.
        cluster.delay_replica(False)
        wait_until(
            lambda: cluster.run_row(run_id)["status"] == "succeeded", timeout=120, message="the run to finish"
        )
        finished = cluster.run_row(run_id)
        assert finished["counts"] == {"grants": 30}
        assert finished["pacing"]["waiting"] is False
        assert finished["pacing"]["last_slowdown"]["reason"].startswith("replica lag ")
        left = cluster.sql(primary, "SELECT code FROM oauth_provider_grant ORDER BY code")
        assert [code for (code,) in left] == [f"live-{i}" for i in range(5)]
    finally:
        worker.stop()
        redis_client.flushdb()


DISPATCH_LANES = """
from oauth_tasks.engine import dispatch
run, _ = dispatch("cleanup", {"only": "grants"}, trigger="test", batch_size=1, interval=1, lanes=2,
    pacing={"max_replica_lag": 2, "lag_recheck_seconds": 1, "target_batch_seconds": 300,
            "min_batch_size": 1, "max_batch_size": 1})
print(run.pk)
"""


def test_a_paced_run_in_lanes_waits_while_the_replica_lags_says_why_and_finishes(
    replica_pair, celery_app, redis_client, tmp_path
):
    """The lag starts while two lanes are deleting: every lane stops, the run records the reason
    on its pacing as a single chain does, and finishes by itself once the replica catches up."""
    cluster = replica_pair
    primary = cluster.primary_port
    env = _seeded_primary(cluster)

    def grants_left() -> int:
        return cluster.sql(primary, "SELECT count(*) FROM oauth_provider_grant")[0][0]

    def lanes_under_way() -> int:
        return cluster.sql(
            primary, "SELECT count(*) FROM oauth_tasks_maintenancelane WHERE batch_number >= 1"
        )[0][0]

    redis_client.flushdb()
    worker = WorkerProcess(env, tmp_path, "maintenance,celery", 2)
    try:
        worker.wait_ready(celery_app)
        run_id = int(_manage(env, "shell", "-c", DISPATCH_LANES).strip().splitlines()[-1])
        wait_until(lambda: lanes_under_way() >= 2, timeout=60, message="both lanes to be under way")

        # From now on the replica applies every commit an hour late: the lanes' commits make it lag.
        cluster.delay_replica(True)
        cluster.commit_on_primary()

        wait_until(
            lambda: cluster.run_row(run_id)["pacing"].get("waits", 0) >= 2,
            timeout=60,
            message="the lanes to wait on the lag",
        )
        waiting = cluster.run_row(run_id)
        assert waiting["status"] == "running"
        assert waiting["pacing"]["waiting"] is True
        assert waiting["pacing"]["reason"].startswith("replica lag ")
        assert waiting["pacing"]["reason"].endswith(" s > 2 s")
        assert waiting["pacing"]["last_slowdown"]["reason"].startswith("replica lag ")
        assert 5 < grants_left() < 35, "the lag must start while the lanes have rows left"

        cluster.delay_replica(False)
        wait_until(
            lambda: cluster.run_row(run_id)["status"] == "succeeded", timeout=180, message="the run to finish"
        )
        finished = cluster.run_row(run_id)
        assert finished["counts"] == {"grants": 30}
        assert finished["pacing"]["waiting"] is False
        left = cluster.sql(primary, "SELECT code FROM oauth_provider_grant ORDER BY code")
        assert [code for (code,) in left] == [f"live-{i}" for i in range(5)]
    finally:
        worker.stop()
        redis_client.flushdb()
