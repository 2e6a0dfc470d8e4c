"""Lanes benchmark: one cleanup run on 1 worker and 1 lane against N workers and N lanes.

Seeds the shape of ``bench/cleanup/seed.py`` once into a template database (PostgreSQL), then for
each configuration copies it (``CREATE DATABASE ... TEMPLATE``), starts that many real Celery
worker processes (one pool process each) on an embedded Redis, dispatches one cleanup with that
many lanes and waits for it. Prints a table: wall time, rows per second, the ratio to one worker,
the batches and their mean duration, and the load average before and after (``uptime``). Timings
are reported, never asserted. ``--write-results`` appends the table to bench/cleanup/RESULTS.md.

    python bench/lanes/run.py --size 300k --configs 1x1,2x2
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLEANUP = HERE.parent / "cleanup"
sys.path.insert(0, str(CLEANUP))

import run as cleanup_bench  # noqa: E402
import seed as shape  # noqa: E402

ROOT = cleanup_bench.ROOT
TEMPLATE = "bench_lanes_template"
DB = "bench_lanes"
BATCH_LINE = re.compile(r"maintenance (?:lane )?batch run=\S+ .*?processed=(\d+) .*?duration=([\d.]+)s")


def load() -> str:
    return os.getloadavg().__repr__()


def start_workers(count: int, env: dict, workdir: Path) -> list[tuple[subprocess.Popen, Path]]:
    workers = []
    for index in range(count):
        log = workdir / f"worker-{index}-{time.time_ns()}.log"
        argv = [
            cleanup_bench.PROJECT_PYTHON, "-m", "celery", "-A", "config", "worker",
            "-Q", "maintenance,celery", "-c", "1", "-n", f"lanes{index}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**env, **cleanup_bench.WORKER_ENV},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        workers.append((proc, log))
    deadline = time.monotonic() + 120
    for proc, log in workers:
        while "ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log}")
            time.sleep(0.2)
    return workers


def stop_workers(workers) -> None:
    for proc, _ in workers:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in workers:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def one_config(pg, workers_n: int, lanes: int, batch_size: int, broker_url: str, before: dict, workdir: Path):
    import redis

    pg.recreate(DB, TEMPLATE)
    redis.Redis.from_url(broker_url).flushall()
    env = cleanup_bench.project_env(
        pg, DB, CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=broker_url, LOG_LEVEL="INFO"
    )
    workers = start_workers(workers_n, env, workdir)
    load_before = os.getloadavg()
    try:
        data = cleanup_bench.child_json(
            [cleanup_bench.PROJECT_PYTHON, str(CLEANUP / "ours.py"), "dispatch", str(batch_size), str(lanes)],
            env,
            ROOT,
            workdir / "dispatch.log",
        )
    finally:
        load_after = os.getloadavg()
        stop_workers(workers)
    batches = []
    for _, log in workers:
        batches += [(int(n), float(d)) for n, d in BATCH_LINE.findall(log.read_text(errors="replace"))]
    after = cleanup_bench.table_counts(pg, DB, shape.OURS)
    deleted = sum(before[t] - after[t] for t in cleanup_bench.TABLES)
    pg.drop(DB)
    working = [(n, d) for n, d in batches if n > 0]
    return {
        "config": f"{workers_n} worker{'s' if workers_n > 1 else ''}, {lanes} lane{'s' if lanes > 1 else ''}",
        "status": data["status"],
        "wall": data["wall"],
        "deleted": deleted,
        "batches": len(batches),
        "mean_batch": sum(d for _, d in working) / len(working) if working else 0.0,
        "rows_per_batch": sum(n for n, _ in working) / len(working) if working else 0.0,
        "load_before": load_before[0],
        "load_after": load_after[0],
    }


def table(results: list[dict], size: str, batch_size: int) -> str:
    base = results[0]["wall"]
    lines = [
        f"Cleanup of {size} access tokens, batch size {batch_size}, "
        "PostgreSQL and the workers on the same cores.",
        "",
        "| workers, lanes | status | rows deleted | wall (s) | rows/s | speed-up | batches "
        "| mean batch (s) | rows per working batch | load 1-min before → after |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['status']} | {r['deleted']:,} | {r['wall']:.1f} | "
            f"{r['deleted'] / r['wall']:,.0f} | {base / r['wall']:.2f}× | {r['batches']} | "
            f"{r['mean_batch']:.3f} | {r['rows_per_batch']:,.0f} | "
            f"{r['load_before']:.2f} → {r['load_after']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="300k", help="access tokens to seed (default 300k)")
    parser.add_argument("--configs", default="1x1,2x2", help="WORKERSxLANES, comma-separated")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--write-results", action="store_true", help="append to bench/cleanup/RESULTS.md")
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PGUSER", "postgres"))
    args = parser.parse_args(argv)
    n = cleanup_bench.parse_size(args.size)
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    pg = cleanup_bench.Pg(args.pg_host, args.pg_port, args.pg_user)
    workdir = Path(tempfile.mkdtemp(prefix="bench-lanes-"))
    cleanup_bench.log(f"work folder (logs) {workdir}")
    cleanup_bench.migrate_schemas(pg, None, workdir, args.batch_size)
    cleanup_bench.seed_template(pg, shape.OURS, TEMPLATE, "bench_schema_ours", n, datetime.now(UTC), True)
    before = cleanup_bench.table_counts(pg, TEMPLATE, shape.OURS)
    from config.embedded_redis import start_embedded_redis

    redis_server = start_embedded_redis(workdir / "redis")
    results = []
    try:
        for workers_n, lanes in configs:
            cleanup_bench.log(f"{workers_n} workers, {lanes} lanes")
            results.append(
                one_config(pg, workers_n, lanes, args.batch_size, redis_server.url, before, workdir)
            )
    finally:
        redis_server.stop()
        for name in (DB, TEMPLATE, "bench_schema_ours"):
            pg.drop(name)
    text = table(results, cleanup_bench.human(n), args.batch_size)
    print(text, flush=True)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.write_results:
        command = f"python bench/lanes/run.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        where = cleanup_bench.environment_line(pg)
        section = (
            f"\n\n## Lanes: one run on 1 worker against 2\n\nMeasured by `{command}` on {where}.\n\n{text}\n"
        )
        with open(CLEANUP / "RESULTS.md", "a") as out:
            out.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
