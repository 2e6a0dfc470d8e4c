"""Cleanup benchmark: this project against django-oauth-toolkit and the floor, on the same data.

For each size N (access tokens), seeds the shape of ``seed.py`` once into a template database per
schema, then times, each on a fresh copy (``CREATE DATABASE ... TEMPLATE``):

(a) ``oauth_provider.cleanup.clear_expired()`` in a process of its own;
(b) the same work dispatched to a real Celery worker (``oauth_tasks.engine.dispatch``);
(c) django-oauth-toolkit 3.4.1's ``clear_expired()``, from PyPI in ``bench/.venv-dot``;
(d) the floor: one SQL statement per rule deleting exactly the same rows;

and a second run of (a) and of (b) on their cleaned databases, which have nothing left to delete.
Prints a table per size; ``--write-results`` also writes ``bench/cleanup/RESULTS.md``. Timings are
reported, never asserted. See README.md in this folder.

``--database mariadb`` does the same on a MariaDB server: the shape is seeded by
``seed_mariadb.py``, and a "copy" is a new database with the template's tables created from their
``SHOW CREATE TABLE`` (foreign keys included) and filled with ``INSERT ... SELECT``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import seed as shape  # noqa: E402
import seed_mariadb  # noqa: E402

DOT_VERSION = "3.4.1"
DOT_VENV = ROOT / "bench" / ".venv-dot"
PROJECT_PYTHON = sys.executable
TABLES = ("refresh", "access", "id", "grant")

DOT_SETTINGS = """
import os
SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "oauth2_provider"]
DATABASES = {"default": {
    "ENGINE": os.environ["BENCH_DB_ENGINE"], "NAME": os.environ["BENCH_DB"],
    "HOST": os.environ["BENCH_PGHOST"], "PORT": os.environ["BENCH_PGPORT"],
    "USER": os.environ["BENCH_PGUSER"],
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
OAUTH2_PROVIDER = {
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": int(os.environ["BENCH_BATCH_SIZE"]),
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": 0,
}
"""

# Times each log line of the toolkit's clear_expired() (one per batch, one per rule): the longest
# gap between two is its longest batch, the whole-filter count() that precedes it included.
DOT_RUNNER = """
import json, logging, sys, time
import django
django.setup()
from oauth2_provider.models import clear_expired

stamps = []

class Stamp(logging.Handler):
    def emit(self, record):
        stamps.append(time.perf_counter())

logger = logging.getLogger("oauth2_provider")
logger.setLevel(logging.DEBUG)
logger.addHandler(Stamp())
logger.propagate = False
started = time.perf_counter()
clear_expired()
wall = time.perf_counter() - started
points = [started, *stamps]
longest = max((b - a for a, b in zip(points, points[1:])), default=0.0)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall": wall, "longest_batch": longest, "peak_rss_kib": hwm, "batches": len(stamps)}))
"""


@dataclass
class Pg:
    host: str
    port: int
    user: str

    name = "PostgreSQL"
    engine = "django.db.backends.postgresql"
    driver = ("psycopg", "psycopg[binary]")  # module, PyPI requirement
    shape = shape

    def conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo("postgres"), autocommit=True)

    def connect(self, dbname: str, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname), autocommit=autocommit)

    def recreate(self, name: str, template: str | None = None) -> None:
        """Drop and create ``name``, as a copy of ``template`` if given, then checkpoint.

        The copy is a file copy (PostgreSQL 15's default copies through the WAL, which would leave
        a database's worth of WAL to checkpoint during the timed run), and the checkpoint flushes
        what earlier steps left dirty, so every variant starts from the same state.
        """
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            statement = f'CREATE DATABASE "{name}"'
            if template:
                statement += f' TEMPLATE "{template}"'
                if conn.info.server_version >= 150000:
                    statement += " STRATEGY FILE_COPY"
            conn.execute(statement)
            conn.execute("CHECKPOINT")

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def analyze(self, name: str) -> None:
        with self.connect(name) as conn:
            conn.execute("VACUUM ANALYZE")

    def moment(self, value: datetime) -> datetime:
        """A time as a query parameter of this database."""
        return value

    def version(self) -> str:
        with self.admin() as conn:
            return "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]


@dataclass
class MariaDb:
    """The same interface as :class:`Pg` on a MariaDB server (``mysqlclient``)."""

    host: str
    port: int
    user: str

    name = "MariaDB"
    engine = "django.db.backends.mysql"
    driver = ("MySQLdb", "mysqlclient")
    shape = seed_mariadb

    def url(self, dbname: str) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str | None, autocommit: bool = True):
        import MySQLdb

        kwargs = {"db": dbname} if dbname else {}
        return MySQLdb.connect(
            host=self.host, port=self.port, user=self.user, autocommit=autocommit, charset="utf8mb4", **kwargs
        )

    def recreate(self, name: str, template: str | None = None) -> None:
        """Drop and create ``name``; as a copy of ``template``'s tables, keys and rows if given."""
        with self.connect(None) as conn:
            cur = conn.cursor()
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            if not template:
                return
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                [template],
            )
            tables = [row[0] for row in cur.fetchall()]
            cur.execute(f"USE `{name}`")
            for table in tables:
                cur.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")
                cur.execute(cur.fetchone()[1])
            for table in tables:
                cur.execute(f"INSERT INTO `{name}`.`{table}` SELECT * FROM `{template}`.`{table}`")
        self.analyze(name)

    def drop(self, name: str) -> None:
        with self.connect(None) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")

    def analyze(self, name: str) -> None:
        with self.connect(name) as conn:
            cur = conn.cursor()
            cur.execute("SHOW TABLES")
            tables = ", ".join(f"`{row[0]}`" for row in cur.fetchall())
            cur.execute(f"ANALYZE TABLE {tables}")
            cur.fetchall()

    def moment(self, value: datetime) -> datetime:
        return seed_mariadb.naive_utc(value)

    def version(self) -> str:
        with self.connect(None) as conn:
            cur = conn.cursor()
            cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size")
            version, pool = cur.fetchone()
        return f"MariaDB {version} (InnoDB buffer pool {int(pool) // 2**20} MiB)"


@dataclass
class Result:
    variant: str
    deleted: dict[str, int] = field(default_factory=dict)
    wall: float | None = None
    peak_rss_kib: int | None = None
    longest_batch: float | None = None
    batches: int | None = None
    note: str = ""
    remaining: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


#: First part of every database name this script creates and drops (``--db-prefix``).
DB_PREFIX = "bench"


def db_name(part: str) -> str:
    return f"{DB_PREFIX}_{part}"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10k, 100k, 1M, 250000)")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# --- environments -----------------------------------------------------------------------------


def ensure_dot_venv(db) -> Path:
    """``bench/.venv-dot`` with django-oauth-toolkit and the database's driver from PyPI; created
    (or completed) on first use."""
    python = DOT_VENV / "bin" / "python"
    module, requirement = db.driver
    probe = [str(python), "-c", f"import oauth2_provider, {module}; print(oauth2_provider.__version__)"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == DOT_VERSION:
            return python
    log(f"creating {DOT_VENV.relative_to(ROOT)} with django-oauth-toolkit=={DOT_VERSION}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DOT_VENV)], check=True)
    subprocess.run(
        [
            str(python), "-m", "pip", "install", "-q",
            f"django-oauth-toolkit=={DOT_VERSION}", "Django>=5.2,<6", requirement,
        ],
        check=True,
    )  # fmt: skip
    return python


#: What a worker process of a benchmark adds to its environment: it keeps its database connection
#: from one batch to the next, as the compose file's services do (DATABASE_CONN_MAX_AGE=60).
WORKER_ENV = {"DATABASE_CONN_MAX_AGE": "60"}


def project_env(pg: Pg, dbname: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=pg.url(dbname),
        DJANGO_SETTINGS_MODULE="bench_settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def dot_env(pg: Pg, dbname: str, workdir: Path, batch_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIRTUAL_ENV"))}
    env.update(
        DJANGO_SETTINGS_MODULE="bench_dot_settings",
        PYTHONPATH=str(workdir),
        BENCH_DB_ENGINE=pg.engine,
        BENCH_DB=dbname,
        BENCH_PGHOST=pg.host,
        BENCH_PGPORT=str(pg.port),
        BENCH_PGUSER=pg.user,
        BENCH_BATCH_SIZE=str(batch_size),
    )
    return env


def migrate_schemas(pg: Pg, dot_python: Path | None, workdir: Path, batch_size: int) -> None:
    log(f"migrating this project's schema into {db_name('schema_ours')}")
    pg.recreate(db_name("schema_ours"))
    subprocess.run(
        [PROJECT_PYTHON, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=project_env(pg, db_name("schema_ours")),
        check=True,
    )
    if dot_python:
        log(f"migrating django-oauth-toolkit's schema into {db_name('schema_dot')}")
        pg.recreate(db_name("schema_dot"))
        subprocess.run(
            [str(dot_python), "-m", "django", "migrate", "-v", "0"],
            cwd=workdir,
            env=dot_env(pg, db_name("schema_dot"), workdir, batch_size),
            check=True,
        )


def seed_template(
    pg: Pg, schema: shape.Schema, template: str, source: str, n: int, seed_time, source_links: bool
) -> dict:
    pg.recreate(template, source)
    started = time.perf_counter()
    with pg.connect(template, autocommit=False) as conn:
        rows = pg.shape.seed(conn, schema, n, seed_time, source_links=source_links)
    pg.analyze(template)
    log(f"seeded {template} in {time.perf_counter() - started:.1f}s: {rows}")
    return rows


def table_counts(pg: Pg, dbname: str, schema: shape.Schema) -> dict[str, int]:
    with pg.connect(dbname) as conn:
        return pg.shape.count_tables(conn, schema)


def child_json(argv: list[str], env: dict, cwd: Path, logfile: Path) -> dict:
    with open(logfile, "ab") as out:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed with {proc.returncode}; see {logfile}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# --- variants ---------------------------------------------------------------------------------


def variant_ours_inprocess(pg: Pg, before: dict, batch_size: int, logfile: Path) -> tuple[Result, Result]:
    """(a), then the same again on the cleaned database (nothing to delete)."""
    db = db_name("ours")
    pg.recreate(db, db_name("template_ours"))
    argv = [PROJECT_PYTHON, str(HERE / "ours.py"), "inprocess", str(batch_size)]
    data = child_json(argv, project_env(pg, db), ROOT, logfile)
    after = table_counts(pg, db, shape.OURS)
    result = Result(
        "ours, in-process clear_expired()",
        deleted={t: before[t] - after[t] for t in TABLES},
        wall=data["wall"],
        peak_rss_kib=data["peak_rss_kib"],
        longest_batch=data["longest_batch"],
        batches=data["batches"],
        note="seconds per phase: "
        + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in data["phase_seconds"].items()),
        remaining=after,
    )
    pg.analyze(db)
    again = child_json(argv, project_env(pg, db), ROOT, logfile)
    rows = sum(after.values())
    noop = Result(
        "ours, nothing to delete",
        deleted={t: after[t] - table_counts(pg, db, shape.OURS)[t] for t in TABLES},
        wall=again["wall"],
        peak_rss_kib=again["peak_rss_kib"],
        longest_batch=again["longest_batch"],
        batches=again["batches"],
        note=f"second run on the cleaned tables ({rows:,} rows left, access {after['access']:,})",
    )
    pg.drop(db)
    return result, noop


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def variant_ours_worker(
    pg: Pg, before: dict, batch_size: int, broker_url: str, workdir: Path
) -> tuple[Result, Result]:
    """(b): a real worker process, one pool process, the run dispatched and polled from another;
    then a second run dispatched on the cleaned database (nothing to delete), timed from the
    dispatch call (its estimate included) to the run's end."""
    import redis

    db = db_name("worker")
    pg.recreate(db, db_name("template_ours"))
    redis.Redis.from_url(broker_url).flushall()
    env = project_env(
        pg, db, CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=broker_url, LOG_LEVEL="INFO", **WORKER_ENV
    )
    worker_log = workdir / f"worker-{time.time_ns()}.log"
    argv = [
        PROJECT_PYTHON, "-m", "celery", "-A", "config", "worker",
        "-Q", "maintenance,celery", "-c", "1", "-n", "bench@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
    ]  # fmt: skip
    with open(worker_log, "wb") as out:
        worker = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while "ready." not in worker_log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {worker_log}")
            time.sleep(0.2)
        dispatch_argv = [PROJECT_PYTHON, str(HERE / "ours.py"), "dispatch", str(batch_size)]
        data = child_json(dispatch_argv, env, ROOT, worker_log.with_suffix(".dispatch.log"))
        rss = {pid: peak_rss_kib(pid) for pid in process_tree(worker.pid)}
        after = table_counts(pg, db, shape.OURS)
        pg.analyze(db)
        again = child_json(dispatch_argv, env, ROOT, worker_log.with_suffix(".dispatch.log"))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    durations = [
        float(m)
        for m in re.findall(
            r"maintenance batch run=\S+ .*?duration=([\d.]+)s", worker_log.read_text(errors="replace")
        )
    ]
    noop = Result(
        "ours on a worker, nothing to delete",
        deleted={t: after[t] - table_counts(pg, db, shape.OURS)[t] for t in TABLES},
        wall=again["wall"],
        batches=again["batches"],
        note=f"second run dispatched on the cleaned tables, from the dispatch call to the run's end: "
        f"{again['dispatch_seconds']:.2f}s in dispatch (the estimate), run {again['status']}",
    )
    pg.drop(db)
    pool = {pid: kib for pid, kib in rss.items() if pid != worker.pid}
    note = f"run {data['status']}, {data['batches']} batches"
    if data.get("engine_seconds") is not None:
        note += f", {data['engine_seconds']:.2f}s from first batch to last"
    note += (
        f"; RSS main {rss.get(worker.pid, 0) // 1024} MiB, pool {max(pool.values(), default=0) // 1024} MiB"
    )
    if data["status"] != "succeeded":
        note += f"; last error: {data['last_error'][:200]}"
    result = Result(
        "ours, Celery worker (dispatch)",
        deleted={t: before[t] - after[t] for t in TABLES},
        wall=data["wall"],
        peak_rss_kib=max(rss.values(), default=0),
        longest_batch=max(durations, default=None),
        batches=data["batches"],
        note=note,
        remaining=after,
    )
    return result, noop


def variant_dot(
    pg: Pg, before: dict, batch_size: int, dot_python: Path, workdir: Path, logfile: Path
) -> Result:
    db = db_name("dot")
    pg.recreate(db, db_name("template_dot"))
    data = child_json(
        [str(dot_python), str(workdir / "bench_dot_runner.py")],
        dot_env(pg, db, workdir, batch_size),
        workdir,
        logfile,
    )
    after = table_counts(pg, db, shape.DOT)
    pg.drop(db)
    return Result(
        f"django-oauth-toolkit {DOT_VERSION} clear_expired()",
        deleted={t: before[t] - after[t] for t in TABLES},
        wall=data["wall"],
        peak_rss_kib=data["peak_rss_kib"],
        longest_batch=data["longest_batch"],
        batches=data["batches"],
        note="longest batch from its log lines",
        remaining=after,
    )


def variant_floor(pg: Pg, before: dict) -> Result:
    db = db_name("floor")
    pg.recreate(db, db_name("template_ours"))
    now = pg.moment(datetime.now(UTC))
    per_rule: dict[str, float] = {}
    started = time.perf_counter()
    with pg.connect(db) as conn:
        for rule, statement in pg.shape.floor_statements(shape.OURS):
            t0 = time.perf_counter()
            conn.cursor().execute(statement, {"now": now})
            per_rule[rule] = per_rule.get(rule, 0.0) + time.perf_counter() - t0
    wall = time.perf_counter() - started
    after = table_counts(pg, db, shape.OURS)
    pg.drop(db)
    return Result(
        "floor: one SQL DELETE per rule",
        deleted={t: before[t] - after[t] for t in TABLES},
        wall=wall,
        longest_batch=max(per_rule.values()),
        batches=len(per_rule),
        note="this project's schema; the longest statement is the longest batch; seconds per rule: "
        + ", ".join(f"{rule} {seconds:.2f}" for rule, seconds in per_rule.items()),
        remaining=after,
    )


# --- report -----------------------------------------------------------------------------------


def format_table(n: int, expected: dict[str, int], results: list[Result], checks: list[str]) -> str:
    dot = next((r for r in results if r.variant.startswith("django-oauth-toolkit")), None)
    floor = next((r for r in results if r.variant.startswith("floor")), None)
    header = (
        "| variant | refresh | access | id | grant | total | wall s | rows/s | peak RSS MiB "
        "| x faster than DOT | x floor | longest batch s | batches |"
    )
    lines = [
        f"### N = {human(n)} access tokens",
        "",
        "Rows to delete per rule: "
        + ", ".join(f"{k} {v:,}" for k, v in expected.items())
        + f" (total {sum(expected.values()):,})",
        "",
        header,
        "|" + "---|" * 13,
    ]
    for r in results:
        comparable = r.total > 0
        rate = f"{r.total / r.wall:,.0f}" if r.wall and r.total else "-"
        vs_dot = (
            f"{dot.wall / r.wall:.1f}" if comparable and dot and dot.wall and r.wall and r is not dot else "-"
        )
        vs_floor = (
            f"{r.wall / floor.wall:.2f}"
            if comparable and floor and floor.wall and r.wall and r is not floor
            else "-"
        )
        rss = f"{r.peak_rss_kib / 1024:.0f}" if r.peak_rss_kib else "-"
        longest = f"{r.longest_batch:.3f}" if r.longest_batch is not None else "-"
        cells = [
            r.variant,
            *(f"{r.deleted.get(t, 0):,}" for t in TABLES),
            f"{r.total:,}",
            f"{r.wall:.2f}" if r.wall is not None else "-",
            rate,
            rss,
            vs_dot,
            vs_floor,
            longest,
            str(r.batches) if r.batches is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r.variant}: {r.note}" for r in results if r.note]
    lines += ["", *notes, *(f"- check: {c}" for c in checks), ""]
    return "\n".join(lines)


def run_size(pg: Pg, n: int, args, dot_python: Path | None, broker_url: str | None, workdir: Path) -> str:
    seed_time = datetime.now(UTC)
    log(f"size {human(n)}: seeding templates")
    links = not args.without_source_links
    seeded = seed_template(
        pg, shape.OURS, db_name("template_ours"), db_name("schema_ours"), n, seed_time, links
    )
    if dot_python:
        seeded_dot = seed_template(
            pg, shape.DOT, db_name("template_dot"), db_name("schema_dot"), n, seed_time, links
        )
        if seeded_dot != seeded:
            raise RuntimeError(f"the two schemas were seeded differently: {seeded} vs {seeded_dot}")
    now = datetime.now(UTC)
    with pg.connect(db_name("template_ours")) as conn:
        expected = pg.shape.count_rules(conn, shape.OURS, now)
        before = pg.shape.count_tables(conn, shape.OURS)
    checks = []
    if dot_python:
        with pg.connect(db_name("template_dot")) as conn:
            expected_dot = pg.shape.count_rules(conn, shape.DOT, now)
            before_dot = pg.shape.count_tables(conn, shape.DOT)
        if expected_dot != expected or before_dot != before:
            checks.append(
                f"MISMATCH between schemas: ours {expected} {before}, DOT {expected_dot} {before_dot}"
            )
        else:
            checks.append("both schemas hold the same rows and the same count per rule")
    log(f"size {human(n)}: rows to delete per rule {expected}")
    logfile = workdir / "children.log"
    results: list[Result] = []
    variants = [
        ("ours in-process", lambda: variant_ours_inprocess(pg, before, args.batch_size, logfile)),
        ("ours worker", lambda: variant_ours_worker(pg, before, args.batch_size, broker_url, workdir)),
        ("DOT", lambda: variant_dot(pg, before_dot, args.batch_size, dot_python, workdir, logfile)),
        ("floor", lambda: variant_floor(pg, before)),
    ]
    noops: list[Result] = []
    for name, variant in variants:
        if name == "ours worker" and not broker_url or name == "DOT" and not dot_python:
            continue
        log(f"size {human(n)}: {name}")
        try:
            outcome = variant()
        except Exception as exc:  # one failing variant still leaves the others' numbers
            log(f"size {human(n)}: {name} failed: {exc}")
            results.append(Result(name, note=f"FAILED: {exc}"))
            continue
        if isinstance(outcome, tuple):
            outcome, noop = outcome
            noops.append(noop)
        results.append(outcome)
        log(f"size {human(n)}: {name}: {outcome.total:,} rows in {outcome.wall:.2f}s")
    expected_tables = {
        "refresh": expected["revoked_refresh_tokens"] + expected["orphaned_refresh_tokens"],
        "access": expected["access_tokens"],
        "id": expected["id_tokens"],
        "grant": expected["grants"],
    }
    for r in results:
        if r.deleted and r.deleted != expected_tables:
            checks.append(f"{r.variant} deleted {r.deleted}, the rules say {expected_tables}")
    if all(r.deleted == expected_tables for r in results if r.wall is not None):
        checks.append("every variant deleted exactly the rows the rules select")
    results.extend(noops)
    for template in (db_name("template_ours"), db_name("template_dot")):
        pg.drop(template)
    return format_table(n, expected, results, checks)


def environment_line(pg: Pg | MariaDb) -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{pg.version()} on {pg.host}:{pg.port}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=None,
                        help="comma-separated sizes in access tokens (default 100k,1M)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one small size (10k)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="batch size of every variant")
    parser.add_argument("--skip-dot", action="store_true", help="leave out django-oauth-toolkit")
    parser.add_argument("--skip-worker", action="store_true", help="leave out the Celery worker")
    parser.add_argument(
        "--without-source-links",
        action="store_true",
        help="seed no source_refresh_token links (nothing to SET NULL when revoked refresh tokens go)",
    )
    parser.add_argument("--write-results", action="store_true", help="also write bench/cleanup/RESULTS.md")
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PGUSER", "postgres"))
    parser.add_argument("--database", choices=["postgresql", "mariadb"], default="postgresql",
                        help="the server every variant runs on (default postgresql)")  # fmt: skip
    parser.add_argument("--mysql-host", default=os.environ.get("BENCH_MYSQLHOST", "127.0.0.1"))
    parser.add_argument("--mysql-port", type=int, default=int(os.environ.get("BENCH_MYSQLPORT", "3306")))
    parser.add_argument("--mysql-user", default=os.environ.get("BENCH_MYSQLUSER", "root"))
    parser.add_argument("--db-prefix", default="bench",
                        help="first part of the names of its databases (default bench)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=None,
                        help="the file --write-results writes")  # fmt: skip
    args = parser.parse_args(argv)
    global DB_PREFIX
    DB_PREFIX = args.db_prefix
    sizes = args.sizes or ([10_000] if args.quick else [100_000, 1_000_000])
    if args.database == "mariadb":
        pg = MariaDb(args.mysql_host, args.mysql_port, args.mysql_user)
    else:
        pg = Pg(args.pg_host, args.pg_port, args.pg_user)

    workdir = Path(tempfile.mkdtemp(prefix="bench-cleanup-"))
    log(f"work folder (logs, DOT settings) {workdir}")
    dot_python = None
    if not args.skip_dot:
        dot_python = ensure_dot_venv(pg)
        (workdir / "bench_dot_settings.py").write_text(DOT_SETTINGS)
        (workdir / "bench_dot_runner.py").write_text(DOT_RUNNER)
    migrate_schemas(pg, dot_python, workdir, args.batch_size)

    redis_server = None
    broker_url = None
    if not args.skip_worker:
        from config.embedded_redis import start_embedded_redis

        redis_server = start_embedded_redis(workdir / "redis")
        broker_url = redis_server.url
    tables = []
    try:
        for n in sizes:
            table = run_size(pg, n, args, dot_python, broker_url, workdir)
            print(table, flush=True)
            tables.append(table)
    finally:
        if redis_server:
            redis_server.stop()
        for name in (
            db_name("ours"),
            db_name("worker"),
            db_name("dot"),
            db_name("floor"),
            db_name("template_ours"),
            db_name("template_dot"),
        ):
            pg.drop(name)
    if args.write_results:
        command_args = sys.argv[1:] if argv is None else argv
        text = "\n".join(
            [
                "# Cleanup benchmark results",
                "",
                f"Measured by `python bench/cleanup/run.py {' '.join(command_args)}`"
                f" on {environment_line(pg)}; batch size {args.batch_size}. See README.md for the data shape"
                " and what each column means.",
                "",
                *tables,
            ]
        )
        results_file = args.results or HERE / (
            "RESULTS-mariadb.md" if args.database == "mariadb" else "RESULTS.md"
        )
        results_file.write_text(text)
        log(f"wrote {results_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
