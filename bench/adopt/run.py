"""Adoption benchmark: ``adopt_dot`` over a django-oauth-toolkit database of N access tokens.

Seeds DOT's schema (migrated by DOT 3.4.1 itself) with the cleanup benchmark's shape
(``bench/cleanup/seed.py``: 95% of the access tokens expired, refresh, revoked and orphaned
refresh tokens, ID tokens, grants) once into a template database, then times on fresh copies:

(a) a first adoption with the defaults (rows the cleanup would delete are skipped);
(b) a first adoption with ``--keep-dead`` (every row copied);
(c) a catch-up right after (a) with nothing new;
(d) the switch: while a writer issues tokens into DOT's tables at a steady rate, a catch-up runs,
    the writer stops (the switch), and a second catch-up copies the last tokens. A prober records
    when each token DOT issued becomes visible to this provider: the downtime of a token is how
    long after the switch it was still unknown here (0 when it was copied before).

Prints tables (rows/s per phase, downtime) and the machine's load average; asserts nothing.
``--write-results`` also writes RESULTS.md in this folder.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("cleanup_bench", ROOT / "bench" / "cleanup" / "run.py")
cleanup_bench = importlib.util.module_from_spec(_spec)
sys.modules["cleanup_bench"] = cleanup_bench
_spec.loader.exec_module(cleanup_bench)
shape = cleanup_bench.shape
Pg, log, human, parse_size = (
    cleanup_bench.Pg,
    cleanup_bench.log,
    cleanup_bench.human,
    cleanup_bench.parse_size,
)

COPY_PHASES = ("applications", "grants", "id_tokens", "access_tokens", "refresh_tokens")
PREFIX = "bench_adopt"


def project_env(pg: Pg, dbname: str, **extra: str) -> dict[str, str]:
    env = cleanup_bench.project_env(pg, dbname, **extra)
    env["OIDC_RSA_PRIVATE_KEY"] = env.get("OIDC_RSA_PRIVATE_KEY", "unused by the benchmark")
    return env


def build_template(pg: Pg, n: int, seed_time: datetime) -> dict:
    template = f"{PREFIX}_template"
    pg.recreate(template)
    log(f"migrating this project's and DOT's schemas into {template}")
    env = project_env(pg, template)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    dot_env = {**env, "DJANGO_SETTINGS_MODULE": "tests.dot_project.settings"}
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "oauth2_provider", "-v", "0"],
        cwd=ROOT,
        env=dot_env,
        check=True,
    )
    started = time.perf_counter()
    with pg.connect(template, autocommit=False) as conn:
        rows = shape.seed(conn, shape.Schema("oauth2_provider"), n, seed_time)
    with pg.connect(template) as conn:
        conn.execute("VACUUM ANALYZE")
    log(f"seeded {template} in {time.perf_counter() - started:.1f}s: {rows}")
    return rows


def adopt(pg: Pg, dbname: str, batch_size: int, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / "child.py"), str(batch_size), *extra],
        cwd=ROOT,
        env=project_env(pg, dbname, LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"adoption failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != "succeeded":
        raise SystemExit(f"adoption {result['status']}: {result['error']}")
    return result


def source_rows(pg: Pg, dbname: str) -> int:
    with pg.connect(dbname) as conn:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM oauth2_provider_{t}").fetchone()[0]
            for t in ("application", "grant", "idtoken", "accesstoken", "refreshtoken")
        )


class DotWriter(threading.Thread):
    """Issues access tokens into DOT's table at ``rate`` per second, as DOT's token endpoint would."""

    def __init__(self, pg: Pg, dbname: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.pg, self.dbname, self.rate = pg, dbname, rate
        self.issued: list[tuple[str, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.pg.connect(self.dbname) as conn:
            while not self.stopping.is_set():
                token = secrets.token_urlsafe(30)
                now = datetime.now(UTC)
                conn.execute(
                    "INSERT INTO oauth2_provider_accesstoken (user_id, application_id, token, "
                    "token_checksum, expires, scope, created, updated, resource) "
                    "VALUES (1, 1, %s, %s, %s, 'read', %s, %s, '[]')",
                    [token, hashlib.sha256(token.encode()).hexdigest(), now + timedelta(hours=1), now, now],
                )
                self.issued.append((hashlib.sha256(token.encode()).hexdigest(), time.monotonic()))
                time.sleep(1 / self.rate)


class Prober(threading.Thread):
    """Polls this provider's table for the tokens the writer issued: when each became known here."""

    def __init__(self, pg: Pg, dbname: str, writer: DotWriter) -> None:
        super().__init__(daemon=True)
        self.pg, self.dbname, self.writer = pg, dbname, writer
        self.seen: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.pg.connect(self.dbname) as conn:
            while not self.stopping.is_set():
                pending = [c for c, _ in list(self.writer.issued) if c not in self.seen]
                if pending:
                    found = conn.execute(
                        "SELECT token_checksum FROM oauth_provider_accesstoken "
                        "WHERE token_checksum = ANY(%s)",
                        [pending],
                    ).fetchall()
                    now = time.monotonic()
                    for (checksum,) in found:
                        self.seen[checksum] = now
                time.sleep(0.05)


def switch(pg: Pg, dbname: str, batch_size: int, rate: float, *, first: bool = True) -> dict:
    """Adopt (unless ``first`` is off: the database holds an adoption already), then catch up while
    DOT issues tokens, switch, catch up again; measure each token's wait."""
    if first:
        adopt(pg, dbname, batch_size)
    writer = DotWriter(pg, dbname, rate)
    prober = Prober(pg, dbname, writer)
    writer.start()
    prober.start()
    time.sleep(5)
    before = adopt(pg, dbname, batch_size)  # catch-up while DOT still serves
    time.sleep(2)
    writer.stopping.set()  # the switch: DOT stops serving, this provider starts
    writer.join()
    switched = time.monotonic()
    after_started = time.monotonic()
    after = adopt(pg, dbname, batch_size)  # catch-up after the switch
    after_done = time.monotonic()
    deadline = time.monotonic() + 30
    while len(prober.seen) < len(writer.issued) and time.monotonic() < deadline:
        time.sleep(0.1)
    prober.stopping.set()
    prober.join()
    waits = [max(0.0, prober.seen.get(c, float("inf")) - switched) for c, _ in writer.issued]
    waiting = [w for w in waits if w > 0]
    return {
        "issued": len(writer.issued),
        "known_at_switch": len(waits) - len(waiting),
        "waited": len(waiting),
        "max_wait": max(waiting, default=0.0),
        "median_wait": statistics.median(waiting) if waiting else 0.0,
        "catch_up_before": before["wall"],
        "catch_up_after": after["wall"],
        "post_switch_run": after_done - after_started,
    }


def phase_rows(result: dict) -> list[tuple[str, int, float]]:
    rows = []
    for phase, seconds in result["phase_seconds"].items():
        rows.append((phase, result["counts"].get(phase, 0), seconds))
    return rows


def format_tables(
    n: int, batch_size: int, source: int, results: dict, downtime: dict, load: list[float]
) -> str:
    lines = [
        f"## {human(n)} access tokens ({source:,} rows in DOT's five tables), batch size {batch_size}",
        "",
        f"Load average at start and end: {load[0]:.2f} / {load[1]:.2f} (2 cores, shared).",
        "",
        "| variant | rows copied | wall s | source rows/s | copied rows/s | longest batch s | verified |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, result in results.items():
        copied = sum(result["counts"].get(p, 0) for p in COPY_PHASES)
        lines.append(
            f"| {name} | {copied:,} | {result['wall']:.1f} | {source / result['wall']:,.0f} | "
            f"{copied / result['wall']:,.0f} | {result['longest_batch']:.2f} | {result['verified']} |"
        )
    first = results["first adoption (skip dead)"]
    lines += ["", "Phases of the first adoption:", "", "| phase | rows | seconds |", "| --- | ---: | ---: |"]
    lines += [f"| {phase} | {rows:,} | {seconds:.1f} |" for phase, rows, seconds in phase_rows(first)]
    if downtime:
        lines += [
            "",
            f"The switch, with DOT issuing about {downtime['rate']:.0f} tokens/s until it stops:",
            "",
            "| tokens DOT issued | known here at the switch | unknown at the switch | longest wait s | "
            "median wait s | catch-up before s | catch-up after s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {downtime['issued']} | {downtime['known_at_switch']} | {downtime['waited']} | "
            f"{downtime['max_wait']:.1f} | {downtime['median_wait']:.1f} | "
            f"{downtime['catch_up_before']:.1f} | {downtime['catch_up_after']:.1f} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=parse_size, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="Tokens/s DOT issues during the switch.")
    parser.add_argument("--skip-keep-dead", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PGUSER", "postgres"))
    parser.add_argument(
        "--switch-on",
        metavar="DBNAME",
        help="Only measure the switch, on a database that holds DOT's tables and an adoption already.",
    )
    args = parser.parse_args()
    pg = Pg(args.pg_host, args.pg_port, args.pg_user)
    if args.switch_on:
        downtime = switch(pg, args.switch_on, args.batch_size, args.rate, first=False)
        print(json.dumps({**downtime, "rate": args.rate, "load": os.getloadavg()[0]}))
        return
    load = [os.getloadavg()[0]]
    seed_time = datetime.now(UTC)
    build_template(pg, args.tokens, seed_time)
    source = source_rows(pg, f"{PREFIX}_template")
    results: dict[str, dict] = {}
    work = f"{PREFIX}_work"
    pg.recreate(work, f"{PREFIX}_template")
    log("first adoption (skip dead)")
    results["first adoption (skip dead)"] = adopt(pg, work, args.batch_size)
    log("catch-up with nothing new")
    results["catch-up, nothing new"] = adopt(pg, work, args.batch_size)
    if not args.skip_keep_dead:
        pg.recreate(work, f"{PREFIX}_template")
        log("first adoption (--keep-dead)")
        results["first adoption (keep dead)"] = adopt(pg, work, args.batch_size, "--keep-dead")
    pg.recreate(work, f"{PREFIX}_template")
    log("the switch")
    downtime = {**switch(pg, work, args.batch_size, args.rate), "rate": args.rate}
    load.append(os.getloadavg()[0])
    for name in (work, f"{PREFIX}_template"):
        pg.drop(name)
    text = format_tables(args.tokens, args.batch_size, source, results, downtime, load)
    print(text)
    if args.write_results:
        stamp = f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/adopt/run.py`.\n\n"
        (HERE / "RESULTS.md").write_text("# Adoption benchmark results\n\n" + stamp + text + "\n")


if __name__ == "__main__":
    main()
