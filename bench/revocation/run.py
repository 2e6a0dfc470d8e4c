"""Revocation benchmark: revoke every token of one application holding N access tokens.

Seeds, with ``INSERT ... SELECT generate_series`` (the cleanup benchmark's ``seed._insert``), one
application with N live access tokens, N/2 refresh tokens, N/5 ID tokens and N/10 grants, plus a
bystander application whose tokens must survive. Then, with a real Celery worker running:

* time to effect: ``engine.dispatch("revoke", {"application": id})`` (which writes the watermark
  with the run) plus one introspection-equivalent check (``oauth_provider.tokens``) that refuses the
  token, while every row is still there;
* time to finish: dispatch until the worker has marked the run succeeded;
* rows per second: rows changed (refresh tokens revoked, access tokens, ID tokens and grants
  deleted) over the time to finish.

Prints a table; timings are reported, never asserted. ``--quick`` runs 10k; the default is 1M.
Needs PostgreSQL (``--pg-host``/``--pg-port``/``--pg-user``, default 127.0.0.1:5432, postgres);
starts its own Redis unless ``CELERY_BROKER_URL`` is set.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def _load_cleanup_bench():
    """The cleanup benchmark's helpers (Pg, project_env, log, sizes) and its seeding module."""
    spec = importlib.util.spec_from_file_location("cleanup_bench", HERE.parent / "cleanup" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # puts bench/cleanup on sys.path and imports its seed module
    return module


cleanup_bench = _load_cleanup_bench()
shape = cleanup_bench.shape
Pg, log, human, parse_size, project_env = (
    cleanup_bench.Pg,
    cleanup_bench.log,
    cleanup_bench.human,
    cleanup_bench.parse_size,
    cleanup_bench.project_env,
)

TARGET, BYSTANDER = 1, 2
BYSTANDER_TOKENS = 1000
S = shape.OURS


def seed(conn, n: int, seed_time) -> dict[str, int]:
    """Two applications; the target gets N access tokens (and refresh, ID tokens, grants)."""
    users = max(1, n // 100)
    owner = {"user_id": f"1 + (i % {users})", "application_id": str(TARGET)}
    created = {"created": "T - interval '1 day'", "updated": "T - interval '1 day'"}
    counts: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        insert = shape._insert  # noqa: SLF001  (the shared INSERT ... SELECT generate_series helper)
        counts["users"] = insert(
            cur,
            "auth_user",
            users,
            {
                "id": "i",
                "password": "'!'",
                "username": "'user' || i",
                "is_active": "true",
                "date_joined": "T",
            },
            seed_time,
        )
        counts["applications"] = insert(
            cur,
            S.application,
            2,
            {
                "id": "i",
                "client_id": "'client-' || i",
                "client_secret": "'!'",
                "client_type": "'confidential'",
                "authorization_grant_type": "'authorization-code'",
                "name": "CASE WHEN i = 1 THEN 'leaky' ELSE 'bystander' END",
                "redirect_uris": "'https://app' || i || '.example.com/cb'",
                "user_id": "1",
                **created,
            },
            seed_time,
        )
        counts["id"] = insert(
            cur,
            S.id_token,
            n,
            {
                "id": "i",
                "jti": "md5('jti' || i)::uuid",
                "expires": "T + interval '1 day'",
                "scope": "'openid read'",
                **created,
                **owner,
            },
            seed_time,
            where="i % 5 = 1",
        )
        counts["access"] = insert(
            cur,
            S.access_token,
            n,
            {
                "id": "i",
                "token": "'at_' || md5('at' || i)",
                "token_checksum": "encode(sha256(('at_' || md5('at' || i))::bytea), 'hex')",
                "expires": "T + interval '1 day'",
                "scope": "'read write'",
                "id_token_id": "CASE WHEN i % 5 = 1 THEN i END",
                **created,
                **owner,
            },
            seed_time,
        )
        counts["refresh"] = insert(
            cur,
            S.refresh_token,
            n,
            {
                "id": "i",
                "token": "'rt_' || md5('rt' || i)",
                "token_checksum": "encode(sha256(('rt_' || md5('rt' || i))::bytea), 'hex')",
                "access_token_id": "i",
                "revoked": "NULL",
                "token_family": "md5('fam' || i)::uuid",
                **created,
                **owner,
            },
            seed_time,
            where="i % 2 = 0",
        )
        counts["grant"] = insert(
            cur,
            S.grant,
            max(1, n // 10),
            {
                "id": "i",
                "code": "'code-' || md5('code' || i)",
                "expires": "T + interval '10 minutes'",
                "redirect_uri": "'https://app1.example.com/cb'",
                "scope": "'read write'",
                **created,
                **owner,
            },
            seed_time,
        )
        counts["bystander_access"] = insert(
            cur,
            S.access_token,
            BYSTANDER_TOKENS,
            {
                "id": f"{n} + i",
                "token": "'bat_' || md5('bat' || i)",
                "token_checksum": "encode(sha256(('bat_' || md5('bat' || i))::bytea), 'hex')",
                "expires": "T + interval '1 day'",
                "scope": "'read write'",
                "user_id": "1",
                "application_id": str(BYSTANDER),
                **created,
            },
            seed_time,
        )
        for table in ("auth_user", S.application, S.id_token, S.refresh_token, S.access_token, S.grant):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    return counts


def state(pg, db: str) -> dict[str, int]:
    """What is left of the target's tokens, and of the bystander's."""
    queries = {
        "target access": f"SELECT count(*) FROM {S.access_token} WHERE application_id = {TARGET}",
        "target refresh live": f"SELECT count(*) FROM {S.refresh_token} "
        f"WHERE application_id = {TARGET} AND revoked IS NULL",
        "target id": f"SELECT count(*) FROM {S.id_token} WHERE application_id = {TARGET}",
        "target grant": f"SELECT count(*) FROM {S.grant} WHERE application_id = {TARGET}",
        "bystander access": f"SELECT count(*) FROM {S.access_token} WHERE application_id = {BYSTANDER}",
    }
    with pg.connect(db) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items()}


def start_worker(env: dict, logfile: Path) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "maintenance,celery",
        "-c", "1", "-n", "bench-revocation@%h", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-l", "INFO",
    ]  # fmt: skip
    with open(logfile, "wb") as out:
        worker = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while "ready." not in logfile.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {logfile}")
        time.sleep(0.2)
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def run_size(pg, n: int, batch_size: int, broker_url: str, workdir: Path) -> dict:
    db = "bench_revocation"
    pg.recreate(db, "bench_revocation_schema")
    seed_time = datetime.now(UTC)
    started = time.perf_counter()
    with pg.connect(db, autocommit=False) as conn:
        seeded = seed(conn, n, seed_time)
    seed_seconds = time.perf_counter() - started
    log(f"seeded {human(n)} in {seed_seconds:.1f}s: {seeded}")
    before = state(pg, db)

    import redis

    redis.Redis.from_url(broker_url).flushdb()
    env = project_env(
        pg, db, CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=broker_url, LOG_LEVEL="INFO"
    )
    worker = start_worker(env, workdir / f"worker-{n}.log")
    try:
        # The last access token: the worker reaches it last, so the row is still there when checked.
        raw = "at_" + hashlib.md5(f"at{n}".encode()).hexdigest()  # noqa: S324  (the seed's token text)
        child = subprocess.run(
            [sys.executable, str(HERE / "child.py"), str(TARGET), raw, str(batch_size)],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"child failed:\n{child.stderr[-3000:]}")
        data = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        stop_worker(worker)
    after = state(pg, db)
    pg.drop(db)
    rows = sum(data["counts"].values())
    checks = []
    if not (data["present_before"] and data["usable_before"]):
        checks.append("the token was not usable before the revocation")
    if data["usable_after"] or not data["present_after"]:
        checks.append("the token was not refused by the watermark while its row was present")
    expected_after = {**dict.fromkeys(before, 0), "bystander access": before["bystander access"]}
    if after != expected_after:
        checks.append(f"left behind: {after}")
    return {
        "n": n,
        "rows": rows,
        "counts": data["counts"],
        "seed_seconds": seed_seconds,
        "check_seconds": data["check_seconds"],
        "dispatch_seconds": data["dispatch_seconds"],
        "effect_seconds": data["effect_seconds"],
        "finish_seconds": data["finish_seconds"],
        "engine_seconds": data["engine_seconds"],
        "batches": data["batches"],
        "status": data["status"],
        "checks": checks or ["token refused while its row was present; target emptied; bystander intact"],
    }


def format_table(results: list[dict], batch_size: int) -> str:
    lines = [
        f"| access tokens | rows changed | time to effect (dispatch + check) | of which the check "
        f"| time to finish (worker) | batches of {batch_size} | rows/s | status |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rate = r["rows"] / r["finish_seconds"] if r["finish_seconds"] else 0
        lines.append(
            f"| {human(r['n'])} | {r['rows']:,} | {r['effect_seconds'] * 1000:.1f} ms "
            f"| {r['check_seconds'] * 1000:.1f} ms | {r['finish_seconds']:.1f} s | {r['batches']} "
            f"| {rate:,.0f} | {r['status']} |"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"- {human(r['n'])}: per phase {r['counts']}; seeded in {r['seed_seconds']:.1f} s; "
            f"run from first batch to last {r['engine_seconds']:.1f} s; " + "; ".join(r["checks"])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=None,
                        help="comma-separated sizes in access tokens (default 1M)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one small size (10k)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--write-results", action="store_true", help="also write bench/revocation/RESULTS.md")
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PGUSER", "postgres"))
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000] if args.quick else [1_000_000])
    pg = Pg(args.pg_host, args.pg_port, args.pg_user)
    workdir = Path(tempfile.mkdtemp(prefix="bench-revocation-"))
    log(f"work folder (logs) {workdir}")

    log("migrating this project's schema into bench_revocation_schema")
    pg.recreate("bench_revocation_schema")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=project_env(pg, "bench_revocation_schema"),
        check=True,
    )
    redis_server = None
    broker_url = os.environ.get("CELERY_BROKER_URL")
    if not broker_url:
        from config.embedded_redis import start_embedded_redis

        redis_server = start_embedded_redis(workdir / "redis")
        broker_url = redis_server.url
    results = []
    try:
        for n in sizes:
            results.append(run_size(pg, n, args.batch_size, broker_url, workdir))
    finally:
        if redis_server:
            redis_server.stop()
        for name in ("bench_revocation", "bench_revocation_schema"):
            pg.drop(name)
    table = format_table(results, args.batch_size)
    print(table, flush=True)
    if args.write_results:
        command_args = sys.argv[1:] if argv is None else argv
        (HERE / "RESULTS.md").write_text(
            "\n".join(
                [
                    "# Revocation benchmark results",
                    "",
                    f"Measured by `python bench/revocation/run.py {' '.join(command_args)}` on "
                    f"{cleanup_bench.environment_line(pg)}; one worker process with one pool process.",
                    "",
                    "Time to effect: `engine.dispatch('revoke', {'application': id})` (the run and the "
                    "watermark in one transaction) plus one introspection-equivalent check of a token "
                    "of the application (`AccessToken.lookup` + `tokens.is_token_usable`), which "
                    "refuses it while its row is still in the table. Time to finish: dispatch until the "
                    "worker has marked the run succeeded. Rows changed: refresh tokens revoked plus "
                    "access tokens, ID tokens and grants deleted.",
                    "",
                    table,
                    "",
                ]
            )
        )
        log(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
