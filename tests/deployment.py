"""The environment a container of the compose deployment gets: .env.example and docker-compose.yml."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import ROOT

INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name, kind, default = match.groups()
        if env.get(name):
            return env[name]
        assert kind == "-", f"${{{name}}} is required by the compose file"
        return default

    return INTERPOLATION.sub(one, str(value))


def deployment_environment(tmp_path: Path, service: str = "web", examples: bool = False) -> dict[str, str]:
    """What the container of ``service`` sees: .env.example (with its "change me" values set, as
    the operator must, unless ``examples``) plus the compose file's environment for the service."""
    dotenv = {
        name: secrets.token_urlsafe(50) if "change-me" in value and not examples else value
        for name, value in env_file(ROOT / ".env.example").items()
    }
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = {
        **compose["x-app"]["environment"],
        **(compose["services"][service].get("environment") or {}),
    }
    environment.pop("<<", None)
    env = {**dotenv, **{name: interpolate(value, dotenv) for name, value in environment.items()}}
    # The secret the compose file mounts, and a data folder of this test's own.
    key = tmp_path / "oidc.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    env.update(OIDC_RSA_PRIVATE_KEY_FILE=str(key), DATA_DIR=str(tmp_path / "data"))
    return env
