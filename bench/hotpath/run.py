"""Hot-path benchmark: introspection and token endpoint latency, this project against DOT 3.4.1.

Each variant is a real gunicorn (one process, gthread, 4 threads, no access log, the same command
line for both projects) on loopback, in front of its own PostgreSQL database, seeded by
``seed.py`` with two client credentials clients holding generated 128-character secrets (one
stored plain, one hashed with Django's default PBKDF2) and a live access token. The variants run
at once; one client sends the requests one after another, one to each variant in turn (the order
rotating every round), each over its kept-alive connection, so a change of the machine's load
falls on every variant alike:

* introspection: ``POST /o/introspect/`` of the token, the client authenticated by HTTP Basic;
* token endpoint: ``POST /o/token/`` with ``grant_type=client_credentials``, HTTP Basic.

Variants: django-oauth-toolkit 3.4.1 and this project with the plain secret; this project without
a shared cache (every check reads the revocation watermarks); DOT and this project with the hashed
secret, this project once with the verified-secret memory off and once on (the default). This
project runs with ``CACHE_URL`` on a Redis server the benchmark starts, as deployed.

Then the queries and Redis round trips per request of ``tests/hotpath_counts.py`` for both
projects. Prints tables and the load average; asserts nothing. ``--write-results`` also writes
RESULTS.md here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from config.embedded_redis import start_embedded_redis  # noqa: E402

DATABASES = {"ours": "oauth_hotpath_bench_ours", "dot": "oauth_hotpath_bench_dot"}
SETTINGS = {"ours": "bench.hotpath.ours_settings", "dot": "bench.hotpath.dot_settings"}
WSGI = {"ours": "config.wsgi", "dot": "django.core.wsgi:get_wsgi_application()"}


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Variant:
    label: str
    project: str
    secret: str  # "plain" or "hashed"
    hashed_slow: bool = False  # every request pays PBKDF2: fewer requests
    env: dict[str, str] = field(default_factory=dict)
    shared_cache: bool = True


VARIANTS = [
    Variant("django-oauth-toolkit 3.4.1", "dot", "plain"),
    Variant("this project", "ours", "plain"),
    Variant("this project, per-process cache (no CACHE_URL)", "ours", "plain", shared_cache=False),
    Variant("django-oauth-toolkit 3.4.1", "dot", "hashed", hashed_slow=True),
    Variant(
        "this project, verified-secret memory off",
        "ours",
        "hashed",
        hashed_slow=True,
        env={"BENCH_CLIENT_SECRET_VERIFY_CACHE_SECONDS": "0"},
    ),
    Variant("this project, verified-secret memory on (default)", "ours", "hashed"),
]


class Pg:
    def __init__(self, host: str, port: int, user: str) -> None:
        self.host, self.port, self.user = host, port, user

    def admin(self):
        return psycopg.connect(
            f"host={self.host} port={self.port} user={self.user} dbname=postgres", autocommit=True
        )

    def url(self, name: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{name}"

    def recreate(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def version(self) -> str:
        with self.admin() as conn:
            return conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]


def rsa_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def environment(project: str, database_url: str, workdir: Path, redis_url: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CACHE_URL", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS[project],
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        OAUTHLIB_INSECURE_TRANSPORT="1",
        LOG_LEVEL="WARNING",
        DATA_DIR=str(workdir / "data"),
        SECRET_KEY=workdir.joinpath("secret").read_text(),
        OIDC_RSA_PRIVATE_KEY=workdir.joinpath("oidc.pem").read_text(),
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
    )
    if redis_url:
        env["CELERY_BROKER_URL"] = redis_url
        env["CACHE_URL"] = redis_url.rsplit("/", 1)[0] + "/2"
    env.update(extra)
    return env


def prepare(project: str, pg: Pg, workdir: Path) -> dict:
    """A migrated, seeded database for ``project``; returns the seed's clients and token."""
    name = DATABASES[project]
    pg.recreate(name)
    env = environment(project, pg.url(name), workdir, None)
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [sys.executable, str(HERE / "seed.py"), project],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(seeded.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, project: str, env: dict, logfile: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "gunicorn", WSGI[project], "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--worker-class", "gthread", "--threads", "4", "--keep-alive", "5",
        ]  # fmt: skip
        self._log = open(logfile, "wb")
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {logfile}")
            try:
                requests.get(f"{self.url}/o/token/", timeout=5)
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer; see {logfile}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self._log.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def start_variant(variant: Variant, seeded: dict, pg: Pg, workdir: Path, redis_url: str):
    """The variant's gunicorn, and its two requests (each raising on a wrong answer)."""
    env = environment(
        variant.project,
        pg.url(DATABASES[variant.project]),
        workdir,
        redis_url if variant.project == "ours" and variant.shared_cache else None,
        **variant.env,
    )
    slug = f"{variant.project}-{variant.secret}-{len(variant.env)}-{variant.shared_cache}"
    server = Server(variant.project, env, workdir / f"gunicorn-{slug}.log")
    client = seeded["clients"][variant.secret]
    auth = (client["client_id"], client["secret"])
    session = requests.Session()

    def introspect():
        response = session.post(
            f"{server.url}/o/introspect/", data={"token": seeded["token"]}, auth=auth, timeout=60
        )
        if response.status_code != 200 or response.json().get("active") is not True:
            raise RuntimeError(
                f"{variant.label}: introspection answered {response.status_code} {response.text[:200]}"
            )

    def token():
        response = session.post(
            f"{server.url}/o/token/", data={"grant_type": "client_credentials"}, auth=auth, timeout=60
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"{variant.label}: token endpoint answered {response.status_code} {response.text[:200]}"
            )

    return server, {"introspection": introspect, "token": token}


def run_group(variants: list[Variant], seeded: dict, pg: Pg, workdir: Path, redis_url: str, n: int) -> dict:
    """Every variant of the group served at once, their requests interleaved round by round (the
    order rotating), so a change of the machine's load falls on all of them alike."""
    started = [start_variant(v, seeded[v.project], pg, workdir, redis_url) for v in variants]
    times: dict[int, dict[str, list[float]]] = {
        i: {"introspection": [], "token": []} for i in range(len(variants))
    }
    try:
        for _server, send in started:
            for _ in range(3):  # warm-up: connections, the first hash, the watermarks
                send["introspection"]()
                send["token"]()
        for endpoint in ("introspection", "token"):
            for round_number in range(n):
                for offset in range(len(variants)):
                    index = (round_number + offset) % len(variants)
                    request = started[index][1][endpoint]
                    begun = time.perf_counter()
                    request()
                    times[index][endpoint].append(time.perf_counter() - begun)
    finally:
        for server, _send in started:
            server.stop()
    results = {}
    for index, variant in enumerate(variants):
        results[variant.label, variant.secret] = {
            endpoint: {"p50": percentile(v, 0.5) * 1000, "p95": percentile(v, 0.95) * 1000, "n": n}
            for endpoint, v in times[index].items()
        }
        log(
            f"{variant.label} ({variant.secret}): introspection p50 "
            f"{results[variant.label, variant.secret]['introspection']['p50']:.1f} ms, token p50 "
            f"{results[variant.label, variant.secret]['token']['p50']:.1f} ms"
        )
    return results


def count_queries(project: str, workdir: Path, redis_url: str) -> dict[str, dict[str, int]]:
    """Queries and Redis round trips per request (``tests/hotpath_counts.py``), in a subprocess."""
    database = workdir / f"count-{project}.sqlite3"
    env = environment(project, f"sqlite:///{database}", workdir, redis_url if project == "ours" else None)
    if project == "dot":
        env["DJANGO_SETTINGS_MODULE"] = "tests.dot_project.settings"
    else:
        env["CACHE_URL"] = redis_url.rsplit("/", 1)[0] + "/4"
    done = subprocess.run(
        [sys.executable, "-m", "tests.hotpath_counts", project],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def format_tables(results: list[tuple[Variant, dict]], counts: dict[str, dict[str, int]]) -> str:
    baseline = {v.secret: r for v, r in results if v.project == "dot"}
    lines = [
        "| server | client secret | introspection p50 | p95 | × DOT p50 "
        "| token endpoint p50 | p95 | × DOT p50 | requests each |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, result in results:
        base = baseline[variant.secret]
        intro, tok = result["introspection"], result["token"]
        intro_ratio = intro["p50"] / base["introspection"]["p50"]
        token_ratio = tok["p50"] / base["token"]["p50"]
        lines.append(
            f"| {variant.label} | {variant.secret} | {intro['p50']:.1f} ms | {intro['p95']:.1f} ms "
            f"| {intro_ratio:.2f} | {tok['p50']:.1f} ms | {tok['p95']:.1f} ms | {token_ratio:.2f} "
            f"| {intro['n']} |"
        )
    lines += [
        "",
        "| request | DOT 3.4.1 queries | this project queries | this project Redis round trips |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "introspect_basic": "introspection, client by HTTP Basic",
        "introspect_bearer": "introspection, caller by bearer token",
        "protected_resource": "protected resource (bearer)",
        "userinfo": "userinfo",
        "client_credentials": "token, client credentials",
        "authorization_code": "token, authorization code",
        "refresh_token": "token, refresh token",
    }
    for key, name in names.items():
        lines.append(
            f"| {name} | {counts['dot']['queries'][key]} | {counts['ours']['queries'][key]} "
            f"| {counts['ours']['redis_round_trips'][key]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint and variant")
    parser.add_argument(
        "--hashed-requests", type=int, default=30, help="timed requests where every one pays PBKDF2"
    )
    parser.add_argument("--write-results", action="store_true", help="also write bench/hotpath/RESULTS.md")
    parser.add_argument("--pg-host", default=os.environ.get("BENCH_PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("BENCH_PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("BENCH_PGUSER", "postgres"))
    args = parser.parse_args(argv)
    if args.requests < 1 or args.hashed_requests < 1:
        parser.error("--requests and --hashed-requests must be at least 1")

    pg = Pg(args.pg_host, args.pg_port, args.pg_user)
    workdir = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    (workdir / "data").mkdir(mode=0o700)
    (workdir / "secret").write_text(secrets.token_urlsafe(50))
    (workdir / "oidc.pem").write_text(rsa_key())
    log(f"work folder (logs) {workdir}")
    redis_server = start_embedded_redis(workdir / "redis")
    load_before = load_average()
    results = []
    try:
        seeded = {project: prepare(project, pg, workdir) for project in DATABASES}
        log("seeded both databases")
        measured = {}
        fast = [v for v in VARIANTS if not v.hashed_slow]
        slow = [v for v in VARIANTS if v.hashed_slow]
        measured.update(run_group(fast, seeded, pg, workdir, redis_server.url, args.requests))
        measured.update(run_group(slow, seeded, pg, workdir, redis_server.url, args.hashed_requests))
        results = [(v, measured[v.label, v.secret]) for v in VARIANTS]
        counts = {project: count_queries(project, workdir, redis_server.url) for project in DATABASES}
    finally:
        redis_server.stop()
        for name in DATABASES.values():
            pg.drop(name)
    load_after = load_average()
    table = format_tables(results, counts)
    setting = (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{pg.version()} on {pg.host}:{pg.port}; load average (1, 5, 15 min) {load_before} before, "
        f"{load_after} after"
    )
    print(setting)
    print(table, flush=True)
    if args.write_results:
        command = " ".join(sys.argv[1:] if argv is None else argv)
        (HERE / "RESULTS.md").write_text(
            "\n".join(
                [
                    "# Hot-path benchmark results",
                    "",
                    f"Measured by `python bench/hotpath/run.py {command}`".rstrip() + f" on {setting}.",
                    "",
                    "One gunicorn process per variant (gthread, 4 threads, no access log, the same command "
                    "line for both projects) on loopback, all running at once; one client sends the "
                    "requests one after another, one to each variant in turn, so a change of load falls on "
                    "all alike; "
                    "every client secret is a generated 128-character one. × DOT compares with "
                    "django-oauth-toolkit 3.4.1 with the same kind of secret. The second table counts "
                    "database queries and Redis round trips per request (`tests/hotpath_counts.py`, as "
                    "`tests/test_hotpath_queries.py` and `tests/test_hotpath_cache_commands.py` count "
                    "them). How to read it: [README.md](README.md).",
                    "",
                    table,
                    "",
                ]
            )
        )
        log(f"wrote {HERE / 'RESULTS.md'}")
    shutil.rmtree(workdir / "redis", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
