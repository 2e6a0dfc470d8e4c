"""Load benchmark: what live traffic feels while a cleanup runs, with fixed batches and with pacing.

On loopback only, against PostgreSQL: gunicorn serving the provider (2 workers, as
``oauth-provider-run web``), one real Celery worker, and ``--threads`` client threads that each, in
a loop, get a token with the client-credentials grant and introspect it. Three phases, each on a
fresh copy of the same seeded database (the shape of ``bench/cleanup/seed.py``):

1. idle: the load alone, for ``--idle-seconds``;
2. fixed: the load while a cleanup runs with pacing off (batches of
   ``CLEAR_EXPIRED_TOKENS_BATCH_SIZE``, no pause), from its dispatch to its end;
3. paced: the same with pacing on (the ``OAUTH_MAINTENANCE`` pacing defaults).

``--rounds N`` repeats the three phases (fixed and paced in alternating order) and reports the
medians of the ratios to each round's idle phase.

Prints, per phase and endpoint, p50/p95/p99 latency and throughput, and the cleanup's wall time;
``--write-results`` writes ``bench/load/RESULTS.md``. Timings are reported, never asserted.

    .venv/bin/python bench/load/run.py --size 200k --idle-seconds 30 --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent / "cleanup"))

import seed as shape  # noqa: E402
from run import WORKER_ENV  # noqa: E402  (bench/cleanup/run.py: what a benchmark's worker adds)

from config import run as project_run  # noqa: E402
from config.embedded_redis import start_embedded_redis  # noqa: E402

PREFIX = os.environ.get("BENCH_DB_PREFIX", "oauth_pacing_load")
PYTHON = sys.executable


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


@dataclass
class Pg:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def recreate(self, name: str, template: str | None = None) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            statement = f'CREATE DATABASE "{name}"'
            if template:
                statement += f' TEMPLATE "{template}" STRATEGY FILE_COPY'
            conn.execute(statement)
            conn.execute("CHECKPOINT")

    def drop(self, name: str) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(pg: Pg, dbname: str, broker: str, **extra: str) -> dict[str, str]:
    env = project_run.child_env(
        {
            "DATABASE_URL": pg.url(dbname),
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": broker,
            "LOG_LEVEL": "WARNING",
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
            **project_run.PLAIN_HTTP_ON_LOOPBACK,
        }
    )
    env.update(extra)
    return env


def child(env: dict, *args: str) -> dict:
    out = subprocess.run(
        [PYTHON, str(HERE / "child.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"child.py {args} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Service:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, argv: list[str], env: dict, logfile: Path) -> None:
        self.logfile = logfile
        self._out = open(logfile, "wb")
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()


def start_web(env: dict, workdir: Path) -> tuple[Service, str]:
    from config.embedded_redis import free_port

    port = free_port()
    web = Service(project_run.service_argv("web", host="127.0.0.1", port=port), env, workdir / "web.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if web.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {web.logfile}")
        try:
            requests.get(f"{url}/static/none", timeout=5)
            return web, url
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer; see {web.logfile}")


def start_worker(env: dict, workdir: Path, name: str) -> Service:
    argv = [
        PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "maintenance,celery", "-c", "1",
        "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
    ]  # fmt: skip
    worker = Service(argv, {**env, **WORKER_ENV, "LOG_LEVEL": "INFO"}, workdir / f"worker-{name}.log")
    deadline = time.monotonic() + 120
    while "ready." not in worker.logfile.read_text(errors="replace"):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {worker.logfile}")
        time.sleep(0.2)
    return worker


@dataclass
class Samples:
    token: list[float] = field(default_factory=list)
    introspect: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0


class Load:
    """``threads`` clients, each: token (client credentials, HTTP Basic) then introspect it."""

    def __init__(self, url: str, creds: dict, threads: int) -> None:
        self.url, self.creds, self.threads = url, creds, threads
        self._stop = threading.Event()
        self._recording = threading.Event()
        self._lock = threading.Lock()
        self.samples = Samples()
        self._workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        session = requests.Session()
        auth = (self.creds["client_id"], self.creds["client_secret"])
        bearer = {"Authorization": f"Bearer {self.creds['introspection_bearer']}"}
        while not self._stop.is_set():
            t0 = time.perf_counter()
            ok, token = False, None
            try:
                response = session.post(
                    f"{self.url}/o/token/", data={"grant_type": "client_credentials"}, auth=auth, timeout=30
                )
                ok = response.status_code == 200
                token = response.json().get("access_token") if ok else None
            except requests.RequestException:
                pass
            t1 = time.perf_counter()
            ok2 = False
            if token:
                try:
                    response = session.post(
                        f"{self.url}/o/introspect/", data={"token": token}, headers=bearer, timeout=30
                    )
                    ok2 = response.status_code == 200 and response.json().get("active") is True
                except requests.RequestException:
                    pass
            t2 = time.perf_counter()
            if self._recording.is_set():
                with self._lock:
                    if ok:
                        self.samples.token.append(t1 - t0)
                    if ok2:
                        self.samples.introspect.append(t2 - t1)
                    self.samples.errors += (not ok) + (bool(token) and not ok2)

    def start(self) -> None:
        for thread in self._workers:
            thread.start()

    def record(self) -> tuple[threading.Event, float]:
        with self._lock:
            self.samples = Samples()
        self._recording.set()
        return self._recording, time.perf_counter()

    def take(self, started: float) -> Samples:
        self._recording.clear()
        with self._lock:
            samples, self.samples = self.samples, Samples()
        samples.seconds = time.perf_counter() - started
        return samples

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(60)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def summary(samples: Samples) -> dict:
    def stats(values):
        return {
            "n": len(values),
            "p50": pct(values, 50),
            "p95": pct(values, 95),
            "p99": pct(values, 99),
            "mean": statistics.fmean(values) * 1000 if values else float("nan"),
        }

    return {
        "token": stats(samples.token),
        "introspect": stats(samples.introspect),
        "rps": (len(samples.token) + len(samples.introspect)) / samples.seconds if samples.seconds else 0,
        "errors": samples.errors,
        "seconds": samples.seconds,
    }


def phase(
    pg: Pg, name: str, template: str, broker: str, creds: dict, args, workdir: Path, paced: bool | None
) -> dict:
    db = f"{PREFIX}_run"
    pg.recreate(db, template)
    env = env_for(pg, db, broker)
    web, url = start_web(env, workdir)
    worker = start_worker(env, workdir, name) if paced is not None else None
    load = Load(url, creds, args.threads)
    try:
        load.start()
        time.sleep(args.warmup_seconds)  # connections, imports, first requests
        load1 = os.getloadavg()[0]
        cleanup = None
        if paced is None:
            recording, started = load.record()
            time.sleep(args.idle_seconds)
            samples = load.take(started)
        else:
            # Record from the dispatch to the run's end: the child's Django start-up is not counted.
            proc = subprocess.Popen(
                [PYTHON, str(HERE / "child.py"), "cleanup", "1" if paced else "0", args.pacing],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            first = proc.stdout.readline()
            if not first.startswith("{"):
                raise RuntimeError(f"cleanup child said {first!r}")
            recording, started = load.record()
            last = proc.stdout.readline()
            samples = load.take(started)
            if proc.wait() or not last.startswith("{"):
                raise RuntimeError(f"cleanup child failed ({proc.returncode}): {last!r}")
            cleanup = json.loads(last)
        result = {"name": name, "load_before": load1, "load_after": os.getloadavg()[0], **summary(samples)}
        if cleanup:
            result["cleanup"] = cleanup
        return result
    finally:
        load.stop()
        if worker:
            worker.stop()
        web.stop()
        pg.drop(db)


def fmt(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"


def table(rounds: list[list[dict]]) -> str:
    """One row per phase of every round; the ratios are against the same round's idle phase."""
    lines = [
        "| round | phase | token p50 / p95 / p99 (ms) | introspect p50 / p95 / p99 (ms) "
        "| p99 vs idle (token, introspect) | requests/s | errors | cleanup wall | batches | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for number, results in enumerate(rounds, 1):
        idle = results[0]
        for r in results:
            t, i = r["token"], r["introspect"]
            ratio = f"{t['p99'] / idle['token']['p99']:.2f}x, {i['p99'] / idle['introspect']['p99']:.2f}x"
            cleanup = r.get("cleanup")
            wall = (
                f"{cleanup['wall']:.1f} s ({cleanup['status']}, {cleanup['total']:,} rows)"
                if cleanup
                else "-"
            )
            batches = str(cleanup["batches"]) if cleanup else "-"
            lines.append(
                f"| {number} | {r['name']} | {fmt(t['p50'])} / {fmt(t['p95'])} / {fmt(t['p99'])} "
                f"| {fmt(i['p50'])} / {fmt(i['p95'])} / {fmt(i['p99'])} | {ratio} "
                f"| {r['rps']:.1f} | {r['errors']} "
                f"| {wall} | {batches} | {r['load_before']:.2f} -> {r['load_after']:.2f} |"
            )
    return "\n".join(lines)


def medians(rounds: list[list[dict]]) -> dict[str, dict[str, float]]:
    """Per cleanup phase, the median over rounds of its ratios to the round's idle phase."""
    out: dict[str, dict[str, float]] = {}
    for index, key in ((1, "fixed"), (2, "paced")):
        values: dict[str, list[float]] = {}
        for results in rounds:
            idle, r = results[0], results[index]
            for endpoint in ("token", "introspect"):
                for p in ("p50", "p99"):
                    values.setdefault(f"{endpoint} {p}", []).append(r[endpoint][p] / idle[endpoint][p])
            values.setdefault("wall", []).append(r["cleanup"]["wall"])
            values.setdefault("rps", []).append(r["rps"] / idle["rps"])
        out[key] = {name: statistics.median(v) for name, v in values.items()}
    return out


def summary_table(rounds: list[list[dict]]) -> str:
    m = medians(rounds)
    lines = [
        f"Median over {len(rounds)} round(s), each cleanup phase against its round's idle phase:",
        "",
        "| cleanup | token p50 | token p99 | introspect p50 | introspect p99 | throughput | wall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (("fixed", "fixed batches"), ("paced", "paced")):
        v = m[key]
        lines.append(
            f"| {label} | {v['token p50']:.2f}x | {v['token p99']:.2f}x | {v['introspect p50']:.2f}x "
            f"| {v['introspect p99']:.2f}x | {v['rps']:.2f}x | {v['wall']:.1f} s |"
        )
    lines += [
        "",
        f"Paced wall time / fixed wall time (medians): {m['paced']['wall'] / m['fixed']['wall']:.2f}x.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1M", help="access tokens seeded (e.g. 200k, 1M)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="idle, fixed, paced: this many times")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument(
        "--pacing",
        default="",
        help='run settings of the paced phase over the defaults, e.g. {"max_busy_share": 0.3}',
    )
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    n = parse_size(args.size)
    pg = Pg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis = start_embedded_redis(workdir / "redis")
    broker = redis.url
    schema_db, template = f"{PREFIX}_schema", f"{PREFIX}_tpl"
    try:
        log(f"migrating {schema_db}")
        pg.recreate(schema_db)
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"],
            cwd=ROOT,
            env=env_for(pg, schema_db, broker),
            check=True,
        )
        pg.recreate(template, schema_db)
        started = time.perf_counter()
        with psycopg.connect(pg.conninfo(template)) as conn:
            rows = shape.seed(conn, shape.OURS, n, datetime.now(UTC), source_links=True)
        creds = child(env_for(pg, template, broker), "setup")
        with psycopg.connect(pg.conninfo(template), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        log(f"seeded {n:,} access tokens in {time.perf_counter() - started:.1f}s: {rows}")
        rounds = []
        for number in range(1, args.rounds + 1):
            phases = [("cleanup, fixed batches", False), ("cleanup, paced", True)]
            if number % 2 == 0:  # alternate the order: a machine growing busier favours neither
                phases.reverse()
            done = {}
            for name, paced in [("idle", None), *phases]:
                log(f"round {number}, phase: {name}")
                done[name] = phase(pg, name, template, broker, creds, args, workdir, paced)
                log(json.dumps(done[name], default=str))
            rounds.append([done["idle"], done["cleanup, fixed batches"], done["cleanup, paced"]])
    finally:
        pg.drop(template)
        pg.drop(schema_db)
        redis.stop()
    with psycopg.connect(pg.conninfo("postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    heading = (
        f"{n:,} access tokens seeded; {args.threads} client threads (token, then introspect), gunicorn "
        f"2 workers, 1 Celery worker, PostgreSQL {version}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    text = table(rounds)
    summary_text = summary_table(rounds)
    print(heading)
    print(text)
    print()
    print(summary_text)
    paced = rounds[-1][2].get("cleanup", {})
    if args.pacing:
        print(f"paced phase with run settings {args.pacing} over the OAUTH_MAINTENANCE defaults")
    if paced.get("pacing"):
        print(f"pacer at the end of the paced run: {json.dumps(paced['pacing'])}")
    if args.write_results:
        write_results(heading, text, summary_text, rounds, args)
        log("wrote bench/load/RESULTS.md")


def write_results(heading: str, text: str, summary_text: str, rounds: list[list[dict]], args) -> None:
    command = "python bench/load/run.py " + " ".join(
        part
        for part in (
            f"--size {args.size}",
            f"--threads {args.threads}",
            f"--idle-seconds {args.idle_seconds:g}",
            f"--rounds {args.rounds}",
            f"--pacing '{args.pacing}'" if args.pacing else "",
            "--write-results",
        )
        if part
    )
    m = medians(rounds)
    overrides = f" with {args.pacing}" if args.pacing else ""
    last_fixed, last_paced = rounds[-1][1]["cleanup"], rounds[-1][2]["cleanup"]
    lines = [
        "# Load benchmark: live traffic during a cleanup",
        "",
        f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        heading + ".",
        f"Load average (1 min) at the start: {rounds[0][0]['load_before']:.2f}; the machine is shared, "
        "so the last column says how busy it was around each phase.",
        "",
        text,
        "",
        summary_text,
        "",
        f"* p99 during the cleanup vs idle (medians): fixed batches {m['fixed']['token p99']:.2f}x (token) / "
        f"{m['fixed']['introspect p99']:.2f}x (introspection); paced {m['paced']['token p99']:.2f}x / "
        f"{m['paced']['introspect p99']:.2f}x (target: at most 1.2x).",
        f"* cleanup wall time paced / fixed: {m['paced']['wall'] / m['fixed']['wall']:.2f}x "
        "(target: at most 3x).",
        f"* paced run settings: the `OAUTH_MAINTENANCE` defaults{overrides}; the pacer at the end of the "
        f"last paced run: `{json.dumps(last_paced.get('pacing'))}`.",
        f"* last round, busy seconds (inside batches): fixed {last_fixed['busy_seconds']:.1f} s, "
        f"paced {last_paced['busy_seconds']:.1f} s; slowest batch fixed "
        f"{last_fixed['slowest_batch']:.2f} s, paced {last_paced['slowest_batch']:.2f} s.",
        "",
        "Latency is measured per request by the client threads, over the cleanup's life (from its "
        "dispatch to its end) or, idle, over a fixed window; each phase runs on a fresh copy of the "
        "same seeded database. Nothing here is asserted; timings vary with the machine's load.",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
