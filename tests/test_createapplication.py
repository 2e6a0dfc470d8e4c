"""The createapplication command: every grant type, every bad input, nothing half-saved."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from oauth_provider.models import AbstractApplication, get_application_model
from tests.factories import make_application, make_user

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command("createapplication", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("grant_type", [value for value, _ in AbstractApplication.GRANT_TYPES])
def test_creates_an_application_for_each_grant_type(grant_type):
    output = run(
        "confidential", grant_type, "--name", f"app {grant_type}", "--redirect-uris", "https://c.example/cb"
    )
    app = get_application_model().objects.get(name=f"app {grant_type}")
    assert app.authorization_grant_type == grant_type
    assert f"client_id: {app.client_id}" in output
    secret = output.split("client_secret: ")[1].split()[0]
    assert app.check_client_secret(secret)
    assert secret not in app.client_secret


def test_all_options_are_stored():
    owner = make_user("owner")
    output = run(
        "confidential",
        "authorization-code",
        "--client-id",
        "my-client",
        "--client-secret",
        "my-secret",
        "--no-hash-client-secret",
        "--name",
        "full",
        "--user",
        "owner",
        "--redirect-uris",
        "https://a.example/cb https://b.example/cb",
        "--post-logout-redirect-uris",
        "https://a.example/bye",
        "--skip-authorization",
        "--algorithm",
        "HS256",
    )
    app = get_application_model().objects.get(client_id="my-client")
    assert app.client_secret == "my-secret"
    assert not app.hash_client_secret
    assert app.user == owner
    assert app.redirect_uris.split() == ["https://a.example/cb", "https://b.example/cb"]
    assert app.post_logout_redirect_uris == "https://a.example/bye"
    assert app.skip_authorization
    assert app.algorithm == "HS256"
    assert "my-secret" in output


def test_user_by_id():
    owner = make_user("by-id")
    run("public", "password", "--user", str(owner.pk), "--name", "p")
    assert get_application_model().objects.get(name="p").user == owner


@pytest.mark.parametrize(
    "args, field",
    [
        (["confidential", "magic-grant"], "authorization_grant_type"),
        (["secret-ish", "password"], "client_type"),
        (["public", "authorization-code", "--redirect-uris", "javascript://x.example/cb"], "redirect_uris"),
        (["public", "authorization-code", "--redirect-uris", "ftp://x.example/cb"], "redirect_uris"),
        (["public", "password", "--user", "ghost"], "user"),
        (["public", "password", "--user", "987654"], "user"),
        (
            [
                "public",
                "authorization-code",
                "--redirect-uris",
                "https://x.example/cb",
                "--algorithm",
                "HS256",
                "--no-hash-client-secret",
            ],
            "algorithm",
        ),
        (["public", "password", "--algorithm", "ES512"], "algorithm"),
        (["confidential", "password", "--client-id", "taken"], "client_id"),
    ],
)
def test_bad_input_names_the_field_and_saves_nothing(args, field):
    make_application(client_id="taken")
    before = get_application_model().objects.count()
    with pytest.raises(CommandError) as excinfo:
        run(*args)
    message = str(excinfo.value)
    assert message.startswith(f"{field}:"), message
    assert "\n" not in message
    assert get_application_model().objects.count() == before


def test_bad_input_exits_non_zero_with_one_line(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createapplication",
            "public",
            "authorization-code",
            "--redirect-uris",
            "gopher://x.example/cb",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "redirect_uris" in lines[0] and "gopher" in lines[0], result.stderr
