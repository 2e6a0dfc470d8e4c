"""docker-compose.yml runs the run command's own entry points, in order, with secrets from the env file.

No Docker engine is needed: the file is parsed (YAML merge keys resolved as Compose does) and held
to the rules an operator relies on.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from config import run

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
INFRASTRUCTURE = {"postgres", "redis"}
RUN_COMMAND = "oauth-provider-run"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|(?<!_FILE)KEY$|BASIC_AUTH|TOKEN", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def app_services(services: dict) -> dict:
    return {name: s for name, s in services.items() if name not in INFRASTRUCTURE}


def environment_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_the_console_script_is_the_run_command():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[RUN_COMMAND] == "config.run:main"


def test_every_application_service_runs_an_entry_point_of_the_run_command(services):
    entry_points = {*run.SERVICES, run.SETUP}
    for name, service in app_services(services).items():
        command = service.get("command")
        assert isinstance(command, list), f"{name}: command must be an exec-form list, got {command!r}"
        assert len(command) == 2 and command[0] == RUN_COMMAND, (
            f"{name}: runs {command!r}, not '{RUN_COMMAND} <service>': its command line would be "
            "defined twice"
        )
        assert command[1] in entry_points, f"{name}: {command[1]!r} is not a service of config/run.py"
        assert "entrypoint" not in service, f"{name}: an entrypoint would bypass the run command"


def test_every_long_running_service_of_the_run_command_is_deployed(services):
    deployed = {s["command"][1]: name for name, s in app_services(services).items()}
    assert set(run.SERVICES) <= set(deployed), f"missing in compose: {set(run.SERVICES) - set(deployed)}"
    assert deployed.get(run.SETUP) == "migrate", "the one-shot migrate service runs the setup entry point"
    assert services["migrate"].get("restart") == "no"


def test_beat_runs_exactly_one_replica(services):
    beat = next(s for s in services.values() if s.get("command") == [RUN_COMMAND, "beat"])
    assert beat.get("deploy", {}).get("replicas") == 1
    assert beat.get("scale", 1) == 1
    for name, service in services.items():
        if service is not beat:
            assert service.get("command") != [RUN_COMMAND, "beat"], f"{name} is a second beat"


def test_flower_has_basic_auth_from_the_environment(services):
    flower = next(s for s in services.values() if s.get("command") == [RUN_COMMAND, "flower"])
    env = environment_of(flower)
    value = env.get("FLOWER_BASIC_AUTH")
    assert value, "Flower must get FLOWER_BASIC_AUTH"
    match = INTERPOLATION.fullmatch(value)
    assert match and match.group(1) == "FLOWER_BASIC_AUTH", (
        f"FLOWER_BASIC_AUTH must come from .env: {value!r}"
    )
    assert ":?" in value, "a missing FLOWER_BASIC_AUTH must stop compose, not start an open Flower"
    # The run command refuses to start Flower beyond loopback without it: the compose file binds 0.0.0.0.
    assert env.get("FLOWER_ADDRESS") == "0.0.0.0"
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), (
            f"Flower's /metrics is public: publish on loopback ({port})"
        )


def test_services_wait_for_healthy_infrastructure_and_for_the_migration(services):
    for name in INFRASTRUCTURE:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} needs a health check"
    for name, service in app_services(services).items():
        depends = service.get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for infra in INFRASTRUCTURE:
            assert infra in depends, f"{name} uses {infra} but does not wait for it"
            assert depends[infra].get("condition") == "service_healthy", (
                f"{name} must wait for healthy {infra}"
            )
        for other, rule in depends.items():
            if other in INFRASTRUCTURE:
                continue
            assert rule.get("condition") in {"service_healthy", "service_completed_successfully"}, (
                name,
                other,
            )
        if name != "migrate":
            assert depends.get("migrate", {}).get("condition") == "service_completed_successfully", (
                f"{name} must start after the migration succeeded"
            )


def test_long_running_services_have_health_checks_except_beat(services):
    for name, service in app_services(services).items():
        if service["command"][1] in {"web", "worker", "flower"}:
            assert service.get("healthcheck", {}).get("test"), f"{name} needs a health check"


def test_redis_persists_with_an_append_only_file_on_a_volume(services):
    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", []))


def _strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif node is not None:
        yield path, str(node)


def test_no_secret_literal_in_the_compose_file(compose):
    for path, value in _strings(compose):
        parent, _, key = path.rpartition(".")
        in_environment = parent.endswith(".environment")
        is_flag = value.lower() in {"0", "1", "true", "false"}
        if in_environment and SECRET_NAME.search(key) and not key.endswith("_FILE") and not is_flag:
            assert INTERPOLATION.fullmatch(value), (
                f"{path} holds a literal, not ${{...}} from .env: {value!r}"
            )
        for url_password in re.findall(r"://[^\s:/@]*:([^\s@/]+)@", value):
            assert INTERPOLATION.fullmatch(url_password), f"{path}: a URL carries a literal password"
        for flag, argument in re.findall(r"--(requirepass|password)[= ]+(\S+)", value):
            assert "$" in argument, f"{path}: --{flag} is given a literal"
    # Every value the file requires is documented in the committed example env file.
    required = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE.read_text()) if ":?" in m.group(0)}
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, re.MULTILINE))
    assert required <= documented, f"not in .env.example: {required - documented}"


def test_the_env_file_is_ignored_by_git_and_kept_out_of_the_image():
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".env" in gitignore and "secrets/" in gitignore
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in dockerignore and "secrets/" in dockerignore
