"""``oauth-provider-run``: start the whole product, or one of its services.

With no argument it runs everything on one machine: the database setup (``migrate``, the beat
schedule, an optional development superuser, ``collectstatic``), then the web server, a Celery
worker, beat and Flower as child processes whose output lines are prefixed with their names. When
``CELERY_BROKER_URL`` is unset it first starts a real Redis server (``config.embedded_redis``) with
its data under ``DATA_DIR``, hands its URL to every child and records it in ``DATA_DIR/broker_url``
(removed on exit) for commands started from other shells. SIGINT or SIGTERM stops every child
(terminate, wait, kill after a timeout) and then the Redis server. A service that dies on its own is
started again after 1, 2, 4 ... 30 s, each restart logged; one that dies more than
``RUN_RESTART_LIMIT`` times within five minutes stops the rest and the command exits non-zero.

With a service name (``web``, ``worker``, ``beat``, ``flower``) it replaces itself with that one
service in the foreground; ``setup`` runs the setup steps and exits. docker-compose calls these
same entry points, so the command lines below are the only definition of each service.

Ports are checked before anything starts: a busy one stops the command with one line naming it.

Environment: ``HOST`` / ``WEB_PORT`` or ``PORT`` (web, default 127.0.0.1:8000; ``--web-port``),
``FLOWER_PORT`` (default 5555; ``--flower-port``), ``WEB_WORKERS`` / ``WEB_THREADS`` (gunicorn,
default 2 processes of 8 threads),
``FLOWER_ADDRESS`` (default: the web host), ``FLOWER_BASIC_AUTH`` (``user:password[,...]``, read by
Flower itself so it never shows in a process list), ``EMBEDDED_REDIS_PORT`` (default: a free port),
``RUN_STOP_TIMEOUT`` (seconds a child gets to stop before it is killed, default 30),
``RUN_RESTART_LIMIT`` (restarts of one service within five minutes, default 5; 0: none),
``SECURE_SSL_REDIRECT`` / ``SESSION_COOKIE_SECURE`` / ``CSRF_COOKIE_SECURE`` / ``SECURE_HSTS_SECONDS``
(off when the web host is loopback and they are unset: there is no TLS on 127.0.0.1),
``DJANGO_SUPERUSER_USERNAME`` / ``DJANGO_SUPERUSER_PASSWORD`` / ``DJANGO_SUPERUSER_EMAIL``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from config.embedded_redis import forget_broker_url, record_broker_url

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Service:
    """One long-running process of the product: its command line, and the one used with ``--dev``."""

    argv: tuple[str, ...]
    dev_argv: tuple[str, ...] | None = None
    help: str = ""


# The one definition of every service's command line. ``{python}`` is the interpreter running this
# command; the other fields come from the options and the environment (see ``service_fields``).
# fmt: off
SERVICES: dict[str, Service] = {
    "web": Service(
        argv=(
            "{python}", "-m", "gunicorn", "config.wsgi",
            "--bind", "{host}:{port}",
            "--access-logfile", "-",
            # Access and error lines with every query value masked and the redaction filter on.
            "--logger-class", "config.gunicorn_logging.RedactingLogger",
            "--graceful-timeout", "20",
            # Threads, not one blocking worker: an idle browser connection holds a thread, never
            # the server (see web_server_fields).
            "--worker-class", "gthread",
            "--workers", "{web_workers}",
            "--threads", "{web_threads}",
            "--keep-alive", "5",
        ),
        # Django's development server, which also serves the admin's static files.
        dev_argv=("{python}", "-m", "django", "runserver", "{host}:{port}", "--insecure"),
        help="the provider's HTTP server (gunicorn; Django's runserver with --dev)",
    ),
    "worker": Service(
        argv=(
            "{python}", "-m", "celery", "-A", "config", "worker",
            "-Q", "maintenance,celery",
            "-n", "worker@%h",
            "-l", "INFO",
        ),
        help="a Celery worker on the maintenance and default queues",
    ),
    "beat": Service(
        # The scheduler (django_celery_beat's DatabaseScheduler) comes from celeryconfig.
        argv=("{python}", "-m", "celery", "-A", "config", "beat", "-l", "INFO"),
        help="Celery beat, reading its schedule from the database",
    ),
    "flower": Service(
        argv=(
            "{python}", "-m", "celery", "-A", "config", "flower",
            "--port={flower_port}",
            "--address={flower_address}",
            # Puts /metrics behind the same basic auth as every other page of Flower.
            "--conf={flower_conf}",
        ),
        help="Flower, the Celery monitor (basic auth from FLOWER_BASIC_AUTH)",
    ),
}
# fmt: on
SETUP = "setup"
ALL_IN_ONE_ORDER = ("web", "worker", "beat", "flower")


def service_fields(host: str, port: int) -> dict[str, str]:
    return {
        "python": sys.executable,
        "host": host,
        "port": str(port),
        "flower_port": os.environ.get("FLOWER_PORT") or "5555",
        "flower_conf": str(ROOT / "config" / "flowerconfig.py"),
        "flower_address": os.environ.get("FLOWER_ADDRESS") or host,
        **web_server_fields(),
    }


def web_server_fields() -> dict[str, str]:
    """gunicorn's processes and threads: ``WEB_WORKERS`` (default 2) times ``WEB_THREADS`` (8).

    With the ``gthread`` worker an open connection that sends nothing (a browser's preconnect, an
    idle keep-alive) waits in the worker's poller instead of blocking the only worker until it is
    killed for a timeout; idle keep-alive connections are closed after 5 s.
    """
    return {
        "web_workers": str(_positive_env("WEB_WORKERS", 2)),
        "web_threads": str(_positive_env("WEB_THREADS", 8)),
    }


def _positive_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"oauth-provider-run: {name} must be a positive whole number, got {raw!r}")
    return int(raw)


# --- ports -----------------------------------------------------------------------------------------


def port_number(value: str) -> int:
    """An argparse type: a TCP port 1-65535."""
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number between 1 and 65535, got {value!r}")
    return int(value)


def busy_port_error(host: str, ports: dict[str, tuple[int, str]]) -> str | None:
    """One line naming the first port that is taken (or given twice) and how to choose another.

    ``ports`` maps a service to its port and the option that sets it. Checked before anything
    starts, so a busy port never leaves half a stack running.
    """
    seen: dict[int, str] = {}
    for name, (port, option) in ports.items():
        if port in seen:
            return f"{name} and {seen[port]} would both listen on port {port}: choose another with {option}"
        seen[port] = name
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]"), port))
            except OSError as exc:
                return (
                    f"{name} port {port} on {host} is not free ({exc.strerror}): choose another with {option}"
                )
    return None


def ports_to_check(args: argparse.Namespace, names: list[str]) -> dict[str, tuple[int, str]]:
    ports = {}
    if "web" in names:
        ports["web"] = (args.port, "--web-port N (or WEB_PORT=N)")
    if "flower" in names:
        ports["Flower"] = (args.flower_port, "--flower-port N (or FLOWER_PORT=N)")
    return ports


def service_argv(name: str, *, host: str, port: int, dev: bool = False) -> list[str]:
    """The command line of service ``name``, with its fields filled in."""
    service = SERVICES[name]
    template = service.dev_argv if dev and service.dev_argv else service.argv
    fields = service_fields(host, port)
    return [part.format(**fields) for part in template]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Children print each line as it comes, so the prefixed output interleaves in real time.
    env["PYTHONUNBUFFERED"] = "1"
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + existing if existing else "")
    env.update(extra or {})
    return env


#: Settings that need TLS, turned off for a web server on loopback unless set in the environment:
#: on 127.0.0.1 there is no TLS to redirect to, and a browser would not send secure cookies back.
PLAIN_HTTP_ON_LOOPBACK = {
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}


def plain_http_defaults(host: str) -> dict[str, str]:
    """The TLS-only settings to turn off for a web server on ``host`` (none beyond loopback)."""
    if host not in LOOPBACK_HOSTS:
        return {}
    return {name: value for name, value in PLAIN_HTTP_ON_LOOPBACK.items() if name not in os.environ}


#: The placeholder .env.example gives every password ("change-me"), and its usual spellings.
EXAMPLE_VALUE = re.compile(r"change[-_ ]?me", re.IGNORECASE)
#: Variables holding a password, and URLs that may carry one (``scheme://user:password@host``).
PASSWORD_VARIABLES = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "DJANGO_SUPERUSER_PASSWORD")
URL_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def example_value_errors(env: Mapping[str, str]) -> list[str]:
    """One message per password of ``env`` still at the example value of ``.env.example``.

    Like ``SECRET_KEY`` in the settings, an example password is refused: every service stops at
    start instead of running with a password printed in the repository.
    """
    errors = []
    for name in PASSWORD_VARIABLES:
        if EXAMPLE_VALUE.search(env.get(name) or ""):
            errors.append(f"{name} is still the example value from .env.example: set a random one")
    for name in URL_VARIABLES:
        password = urlsplit(env.get(name) or "").password or ""
        if EXAMPLE_VALUE.search(unquote(password)):
            errors.append(f"the password in {name} is still the example value: set a random one")
    for pair in (env.get("FLOWER_BASIC_AUTH") or "").split(","):
        user, _, password = pair.partition(":")
        if EXAMPLE_VALUE.search(password):
            errors.append(
                f"FLOWER_BASIC_AUTH: the password of {user.strip()!r} is still the example value: "
                "set a random one"
            )
    return errors


def check_flower_auth(host: str) -> str | None:
    """An error message when Flower would listen beyond loopback with no authentication."""
    address = os.environ.get("FLOWER_ADDRESS") or host
    if address not in LOOPBACK_HOSTS and not os.environ.get("FLOWER_BASIC_AUTH"):
        return (
            f"Flower would listen on {address!r} without authentication: set FLOWER_BASIC_AUTH "
            "(user:password) or bind it to loopback with FLOWER_ADDRESS=127.0.0.1"
        )
    return None


# --- setup -----------------------------------------------------------------------------------------


def run_setup() -> int:
    """Migrate, install the beat schedule, create the development superuser if asked, collect static.

    Each step is idempotent, so this runs before every start and as docker-compose's one-shot
    ``migrate`` service.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command, get_commands

    django.setup()
    call_command("migrate", interactive=False, verbosity=1)
    if "install_schedule" in get_commands():
        call_command("install_schedule")
    else:
        print("setup: no install_schedule command yet; the beat schedule is left as it is", flush=True)
    error = ensure_superuser()
    if error:
        print(f"setup: {error}", file=sys.stderr, flush=True)
        return 2
    call_command("collectstatic", interactive=False, verbosity=0)
    print("setup: done", flush=True)
    return 0


def ensure_superuser() -> str | None:
    """Create ``DJANGO_SUPERUSER_USERNAME`` with ``createsuperuser --noinput`` unless it exists."""
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
    if not username:
        return None
    if not os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
        return "DJANGO_SUPERUSER_USERNAME is set but DJANGO_SUPERUSER_PASSWORD is not"
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    user_model = get_user_model()
    if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
        print(f"setup: superuser {username!r} already exists", flush=True)
        return None
    os.environ.setdefault("DJANGO_SUPERUSER_EMAIL", "")
    call_command("createsuperuser", interactive=False, verbosity=0)
    print(f"setup: created superuser {username!r}", flush=True)
    return None


# --- supervision -----------------------------------------------------------------------------------


class PrefixedOutput:
    """Copies each child's output to ours, every line prefixed with the child's name."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        with self.lock:
            sys.stdout.write(f"{name:<{self.width}} | {line}")
            if not line.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.flush()

    def pump(self, name: str, stream) -> threading.Thread:
        def copy() -> None:
            for raw in iter(stream.readline, b""):
                self.write(name, raw.decode("utf-8", errors="replace"))
            stream.close()

        thread = threading.Thread(target=copy, name=f"output-{name}", daemon=True)
        thread.start()
        return thread


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    reader: threading.Thread
    expected_exit: bool = False


@dataclass
class Supervisor:
    """Starts children in their own process groups and stops them all together."""

    env: dict[str, str]
    output: PrefixedOutput
    stop_timeout: float
    children: list[Child] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    signals_received: int = 0

    def log(self, message: str) -> None:
        self.output.write("run", message)

    def start(self, name: str, argv: list[str]) -> Child:
        # A session of its own: a Ctrl-C in the terminal reaches only this supervisor, which then
        # stops each child in order, and a kill of the group reaches a child's own children too.
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name=name, process=process, reader=self.output.pump(name, process.stdout))
        self.children.append(child)
        self.log(f"started {name} (pid {process.pid}): {' '.join(argv)}")
        return child

    def on_signal(self, signum, frame) -> None:
        self.signals_received += 1
        if self.signals_received > 1:
            # A second Ctrl-C: no more waiting.
            for child in self.children:
                _kill_group(child.process, signal.SIGKILL)
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def first_dead_child(self) -> Child | None:
        for child in self.children:
            if not child.expected_exit and child.process.poll() is not None:
                return child
        return None

    def wait_for(self, child: Child) -> int | None:
        """Wait for a one-shot child; None when a stop was requested first."""
        while not self.stop_requested.is_set():
            code = child.process.poll()
            if code is not None:
                child.expected_exit = True
                child.reader.join(5)
                return code
            time.sleep(0.1)
        return None

    def watch(self) -> Child | None:
        """Block until a stop is requested (None) or a child exits on its own (that child)."""
        while not self.stop_requested.wait(0.2):
            dead = self.first_dead_child()
            if dead is not None:
                return dead
        return None

    def stop_all(self) -> None:
        """Terminate every child (newest first), wait, kill what is left after the timeout."""
        running = [c for c in reversed(self.children) if c.process.poll() is None]
        for child in running:
            self.log(f"stopping {child.name} (pid {child.process.pid})")
            # The main process only: a Celery worker finishes its current task (warm shutdown)
            # and gunicorn its requests; their own children are theirs to stop.
            _signal(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                self.log(f"{child.name} did not stop within {self.stop_timeout:.0f}s: killing it")
                _kill_group(child.process, signal.SIGKILL)
                child.process.wait()
        for child in self.children:
            # Whatever a child left behind in its group (an orphaned pool process) goes too.
            _kill_group(child.process, signal.SIGKILL)
            child.reader.join(5)
            if child.process.returncode is not None and not child.expected_exit:
                self.log(f"{child.name} exited with code {child.process.returncode}")


def _signal(process: subprocess.Popen, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _kill_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class RestartPolicy:
    """When a service that died is started again: after 1 s, 2 s, 4 s ... at most 30 s.

    More than ``limit`` restarts of one service within ``window`` seconds is a crash loop: the run
    then stops every service and exits non-zero, as it does at once with ``limit`` 0.
    """

    limit: int
    window: float = 300.0
    first_delay: float = 1.0
    max_delay: float = 30.0
    history: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> RestartPolicy:
        raw = os.environ.get("RUN_RESTART_LIMIT") or "5"
        if not raw.isdigit():
            raise ValueError(f"RUN_RESTART_LIMIT must be a whole number of restarts, got {raw!r}")
        return cls(limit=int(raw))

    def delay_for(self, name: str) -> float | None:
        """Seconds to wait before restarting ``name`` now, or None when it restarted too often."""
        now = time.monotonic()
        recent = [at for at in self.history.get(name, []) if now - at < self.window]
        if len(recent) >= self.limit:
            return None
        self.history[name] = [*recent, now]
        return min(self.max_delay, self.first_delay * 2 ** len(recent))


def supervise(supervisor: Supervisor, argvs: dict[str, list[str]], policy: RestartPolicy) -> Child | None:
    """Watch the services and restart one that dies, with backoff; every restart is logged.

    Returns None when a stop was requested, or the child that exited once too often (the caller
    stops the rest). A Redis restart or an OOM kill of the worker thus costs a restart, not the stack.
    """
    while True:
        dead = supervisor.watch()
        if dead is None:
            return None
        delay = policy.delay_for(dead.name)
        if delay is None:
            return dead
        dead.expected_exit = True
        restarts = len(policy.history[dead.name])
        supervisor.log(
            f"{dead.name} exited with code {dead.process.returncode}; restarting it in {delay:g}s "
            f"(restart {restarts} of at most {policy.limit} within {policy.window:g}s)"
        )
        _kill_group(dead.process, signal.SIGKILL)  # what it left behind (a worker's pool processes)
        if supervisor.stop_requested.wait(delay):
            return None
        supervisor.start(dead.name, argvs[dead.name])


def record_embedded_broker(supervisor: Supervisor, url: str) -> None:
    """Record the embedded Redis's URL in DATA_DIR, where commands from other shells find it."""
    path = record_broker_url(url)
    supervisor.log(f"broker URL recorded in {path}: manage.py commands from another shell use it")


def run_all(args: argparse.Namespace) -> int:
    try:
        restart_policy = RestartPolicy.from_environment()
    except ValueError as exc:
        print(f"oauth-provider-run: {exc}", file=sys.stderr)
        return 2

    names = [
        name
        for name in ALL_IN_ONE_ORDER
        if not (name == "beat" and args.no_beat) and not (name == "flower" and args.no_flower)
    ]
    if "flower" in names:
        error = check_flower_auth(args.host)
        if error:
            print(f"oauth-provider-run: {error}", file=sys.stderr)
            return 2
    error = busy_port_error(args.host, ports_to_check(args, names))
    if error:
        print(f"oauth-provider-run: {error}", file=sys.stderr)
        return 2

    output = PrefixedOutput(width=max(len(n) for n in [*names, SETUP, "run"]))
    supervisor = Supervisor(
        env={}, output=output, stop_timeout=float(os.environ.get("RUN_STOP_TIMEOUT") or 30)
    )
    supervisor.install_signal_handlers()

    extra: dict[str, str] = {}
    redis = None
    if not os.environ.get("CELERY_BROKER_URL"):
        from config.embedded_redis import start_embedded_redis
        from config.settings import DATA_DIR

        port = int(os.environ["EMBEDDED_REDIS_PORT"]) if os.environ.get("EMBEDDED_REDIS_PORT") else None
        try:
            redis = start_embedded_redis(DATA_DIR / "redis", port=port, persist=True)
        except (RuntimeError, OSError) as exc:
            print(f"oauth-provider-run: cannot start the embedded Redis server: {exc}", file=sys.stderr)
            return 1
        extra["CELERY_BROKER_URL"] = redis.url
        extra.setdefault("CELERY_RESULT_BACKEND", os.environ.get("CELERY_RESULT_BACKEND") or redis.url)
        # Rate-limit counters shared by the web processes, in a database of their own.
        extra["CACHE_URL"] = os.environ.get("CACHE_URL") or redis.url.rsplit("/", 1)[0] + "/2"
        supervisor.log(f"embedded Redis at {redis.url} (pid {redis.process.pid}, data in {redis.workdir})")
        record_embedded_broker(supervisor, redis.url)
    extra.update(plain_http_defaults(args.host))
    supervisor.env = child_env(extra)

    code = 0
    try:
        setup = supervisor.start(SETUP, [sys.executable, "-m", "config.run", SETUP])
        setup_code = supervisor.wait_for(setup)
        if setup_code is None:
            supervisor.log("stop requested during setup")
        elif setup_code != 0:
            supervisor.log(f"setup failed with code {setup_code}")
            code = setup_code
        else:
            for name in names:
                supervisor.start(name, service_argv(name, host=args.host, port=args.port, dev=args.dev))
            supervisor.log(
                f"web on http://{args.host}:{args.port}/ (admin at /admin/)"
                + (
                    f", Flower on http://{service_fields(args.host, args.port)['flower_address']}:"
                    f"{service_fields(args.host, args.port)['flower_port']}/"
                    if "flower" in names
                    else ""
                )
                + "; Ctrl-C stops everything"
            )
            argvs = {name: service_argv(name, host=args.host, port=args.port, dev=args.dev) for name in names}
            dead = supervise(supervisor, argvs, restart_policy)
            if dead is not None:
                supervisor.log(
                    f"{dead.name} exited unexpectedly with code {dead.process.returncode}; stopping the rest"
                )
                dead.expected_exit = True
                code = dead.process.returncode or 1
    finally:
        supervisor.stop_all()
        if redis is not None:
            supervisor.log("stopping embedded Redis")
            forget_broker_url(redis.url)
            redis.stop()
        supervisor.log("stopped" if code == 0 else f"stopped (exit code {code})")
    return code


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    services = "\n".join(f"  {name:<8} {service.help}" for name, service in SERVICES.items())
    parser = argparse.ArgumentParser(
        prog="oauth-provider-run",
        description="Run the OAuth2 provider: everything (no argument) or one service in the foreground.",
        epilog=f"services:\n{services}\n  {SETUP:<8} migrate, install the beat schedule, collect static",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", nargs="?", help="run only this service (see below)")
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1", help="web host (HOST)")
    parser.add_argument(
        "--web-port",
        "--port",
        dest="port",
        type=port_number,
        default=os.environ.get("WEB_PORT") or os.environ.get("PORT") or "8000",
        help="web port (WEB_PORT or PORT; default 8000)",
    )
    parser.add_argument(
        "--flower-port",
        type=port_number,
        default=os.environ.get("FLOWER_PORT") or "5555",
        help="Flower's port (FLOWER_PORT; default 5555)",
    )
    parser.add_argument(
        "--dev", action="store_true", help="serve with Django's runserver instead of gunicorn"
    )
    parser.add_argument("--no-flower", action="store_true", help="do not start Flower")
    parser.add_argument("--no-beat", action="store_true", help="do not start beat")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.environ.get("DATA_DIR"):
        # Children run from the project folder: a relative data folder keeps meaning the caller's.
        os.environ["DATA_DIR"] = str(Path(os.environ["DATA_DIR"]).resolve())
    errors = example_value_errors(os.environ)
    if errors:
        for error in errors:
            print(f"oauth-provider-run: {error}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    # Every child (Flower itself, and the web's start page linking to it) reads the chosen port.
    os.environ["FLOWER_PORT"] = str(args.flower_port)
    if args.service is None:
        return run_all(args)
    if args.service == SETUP:
        return run_setup()
    if args.service not in SERVICES:
        parser.error(f"unknown service {args.service!r} (choose from {', '.join([*SERVICES, SETUP])})")
    if args.service == "flower":
        error = check_flower_auth(args.host)
        if error:
            parser.error(error)
    error = busy_port_error(args.host, ports_to_check(args, [args.service]))
    if error:
        print(f"oauth-provider-run: {error}", file=sys.stderr)
        return 2
    command = service_argv(args.service, host=args.host, port=args.port, dev=args.dev)
    env = child_env(plain_http_defaults(args.host) if args.service == "web" else None)
    sys.stdout.flush()
    os.execvpe(command[0], command, env)
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main())
