"""Adopting a running django-oauth-toolkit 3.4.1 installation, for real.

DOT itself (installed from PyPI as a test dependency) creates its tables with its own migrations
and issues the tokens through its own endpoints, in a subprocess against the same database. After
``manage.py adopt_dot`` the same tokens introspect active on this provider, refresh and revoke
here, and the ID tokens DOT signed verify against this provider's published keys.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from jwcrypto import jwk, jwt
from requests.auth import HTTPBasicAuth

from oauth_provider.models import get_access_token_model, get_application_model, get_refresh_token_model
from oauth_provider.settings import oauth2_settings

from .conftest import ROOT, database_url_for, wait_until
from .test_endpoints_support import base_url_fixture, make_client  # noqa: F401  (the base_url fixture)

DOT_USER = "dot-user"


class DotInstallation:
    """The DOT side: a client registered with DOT and a way to drive DOT's endpoints."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.client: dict = {}

    def __call__(self, action: str, argument: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "tests.dot_project.issue_tokens", action, argument],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def setup(self) -> None:
        self.client = self("setup", DOT_USER)
        self.env.update(
            DOT_CLIENT_ID=self.client["client_id"], DOT_CLIENT_SECRET=self.client["client_secret"]
        )


def drop_dot_tables() -> None:
    """Remove DOT's tables and migration records (the test database's flush does not know them)."""
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if t.startswith("oauth2_provider_")]
    # SQLite checks its deferred foreign keys at commit: switched off while the tables go.
    disabled = connection.disable_constraint_checking()
    try:
        with connection.cursor() as cursor:
            for table in tables:
                cascade = " CASCADE" if connection.vendor == "postgresql" else ""
                cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)}{cascade}")
            cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["oauth2_provider"])
    finally:
        if disabled:
            connection.enable_constraint_checking()


@pytest.fixture
def dot(base_url, django_user_model):
    if connection.vendor not in ("postgresql", "sqlite", "mysql"):
        pytest.skip(f"no adoption on {connection.vendor}")
    django_user_model.objects.create_user(DOT_USER, password="unused-password-1")
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for(connection.settings_dict),
        "OIDC_RSA_PRIVATE_KEY": oauth2_settings.OIDC_RSA_PRIVATE_KEY,
        "DJANGO_SETTINGS_MODULE": "tests.dot_project.settings",
    }
    installation = DotInstallation(env)
    installation.setup()
    yield installation
    drop_dot_tables()


def adopt(*args: str) -> str:
    out = io.StringIO()
    call_command("adopt_dot", "--sync", *args, stdout=out)
    return out.getvalue()


def introspect(base_url: str, resource_server, token: str) -> dict:
    response = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": token},
        auth=HTTPBasicAuth(resource_server.client_id, resource_server.secret),
    )
    assert response.status_code == 200, response.text
    return response.json()


def raw_row(table: str, pk: int, columns: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


def test_dot_issued_tokens_keep_working_after_adoption_and_catch_up(dot, base_url, settings):
    # As django-oauth-toolkit configures it: without reuse protection (on here by default) a revoked
    # refresh token is one the cleanup deletes, so adoption skips it.
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_REUSE_PROTECTION": False}
    first = dot("login", DOT_USER)
    second = dot("login", DOT_USER)
    rotated = dot("refresh", second["refresh_token"])  # DOT revokes second's refresh token
    expired = dot("expired", DOT_USER)

    dry = adopt("--dry-run")
    assert "Dry run" in dry and "access_tokens: 2 would copy" in dry
    assert get_access_token_model().objects.count() == 0

    report = adopt()
    assert "Verified." in report, report
    application = get_application_model().objects.get(pk=dot.client["application_id"])
    assert application.client_id == dot.client["client_id"]
    # The hashed secret is taken as DOT stored it, and checks the secret the client holds.
    columns = "client_secret, created, updated"
    assert raw_row("oauth2_provider_application", application.pk, columns) == raw_row(
        "oauth_provider_application", application.pk, columns
    )
    assert application.check_client_secret(dot.client["client_secret"])
    access_model = get_access_token_model()
    for token in (first, rotated):
        adopted = access_model.lookup(token["access_token"])
        assert adopted is not None
        columns = "token, token_checksum, expires, created, updated, user_id, application_id"
        assert raw_row("oauth2_provider_accesstoken", adopted.pk, columns) == raw_row(
            "oauth_provider_accesstoken", adopted.pk, columns
        )
        assert adopted.id_token_id is not None
    assert access_model.lookup(second["access_token"]) is None  # DOT deleted it on refresh
    assert access_model.lookup(expired["access_token"]) is None  # expired, nothing refers to it: skipped
    # The refresh token DOT revoked when it rotated is one the cleanup would delete: skipped, and
    # the link to it is NULL, as after a cleanup.
    assert get_refresh_token_model().lookup(second["refresh_token"]) is None
    assert access_model.lookup(rotated["access_token"]).source_refresh_token_id is None

    resource_server = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    info = introspect(base_url, resource_server, first["access_token"])
    assert info["active"] is True and info["client_id"] == dot.client["client_id"]
    assert info["username"] == DOT_USER

    keys = jwk.JWKSet.from_json(requests.get(f"{base_url}/o/.well-known/jwks.json").text)
    claims = json.loads(jwt.JWT(jwt=first["id_token"], key=keys, algs=["RS256"]).claims)
    assert claims["aud"] == dot.client["client_id"] and claims["nonce"] == first["nonce"]

    # DOT still serves while the switch happens: a new login, and a revocation on DOT's side.
    third = dot("login", DOT_USER)
    dot("revoke", first["access_token"])
    catch_up = adopt()
    assert "Catch-up after run" in catch_up and "Verified." in catch_up, catch_up
    assert introspect(base_url, resource_server, third["access_token"])["active"] is True
    assert introspect(base_url, resource_server, first["access_token"])["active"] is False

    # Refresh on this provider with the refresh token DOT issued, and the client's DOT credentials.
    refreshed = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
        auth=HTTPBasicAuth(dot.client["client_id"], dot.client["client_secret"]),
    )
    assert refreshed.status_code == 200, refreshed.text
    assert introspect(base_url, resource_server, refreshed.json()["access_token"])["active"] is True
    assert introspect(base_url, resource_server, rotated["access_token"])["active"] is False
    # The refresh token DOT revoked when it rotated is refused here.
    reused = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        auth=HTTPBasicAuth(dot.client["client_id"], dot.client["client_secret"]),
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    revoked = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": third["access_token"]},
        auth=HTTPBasicAuth(dot.client["client_id"], dot.client["client_secret"]),
    )
    assert revoked.status_code == 200
    assert introspect(base_url, resource_server, third["access_token"])["active"] is False

    # This provider's own rows are numbered past DOT's ids and the headroom.
    new_token = get_refresh_token_model().objects.order_by("-pk").first()
    assert new_token.pk > 1_000_000


def test_keep_dead_copies_revoked_refresh_tokens_and_their_links(dot):
    second = dot("login", DOT_USER)
    rotated = dot("refresh", second["refresh_token"])

    assert "Verified." in adopt("--keep-dead")
    old = get_refresh_token_model().lookup(second["refresh_token"])
    columns = "token, token_checksum, revoked, token_family, access_token_id, created, updated"
    assert raw_row("oauth2_provider_refreshtoken", old.pk, columns) == raw_row(
        "oauth_provider_refreshtoken", old.pk, columns
    )
    assert old.revoked is not None and old.access_token_id is None
    new = get_access_token_model().lookup(rotated["access_token"])
    assert new.source_refresh_token_id == old.pk
    assert new.refresh_token.token_family == old.token_family


def test_a_catch_up_never_revives_a_token_revoked_here(dot, base_url):
    token = dot("login", DOT_USER)
    adopt()
    requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["refresh_token"]},
        auth=HTTPBasicAuth(dot.client["client_id"], dot.client["client_secret"]),
    )
    assert "Verified." in adopt()
    refresh = get_refresh_token_model().lookup(token["refresh_token"])
    assert refresh.revoked is not None
    assert get_access_token_model().lookup(token["access_token"]) is None


def test_dry_run_lists_rows_this_provider_cannot_hold_and_the_real_run_refuses_them(dot):
    dot("login", DOT_USER)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE oauth2_provider_application SET algorithm = %s", ["ES256"])

    dry = adopt("--dry-run")
    assert "blocking: 1 applications: unknown algorithm" in dry, dry

    with pytest.raises(CommandError, match="unknown algorithm"):
        adopt()
    assert get_application_model().objects.count() == 0
    assert get_access_token_model().objects.count() == 0


def test_a_first_adoption_refuses_tables_that_already_hold_rows(dot):
    make_client()
    with pytest.raises(CommandError, match="already hold rows"):
        adopt()


@pytest.mark.django_db
def test_adoption_without_dot_tables_names_the_missing_tables():
    with pytest.raises(CommandError, match="source_prefix: .*oauth2_provider_application"):
        adopt()


@pytest.mark.worker
def test_adoption_dispatched_to_a_worker_copies_the_tokens(dot, worker):
    token = dot("login", DOT_USER)
    out = io.StringIO()
    call_command("adopt_dot", stdout=out)
    assert "Dispatched adoption run" in out.getvalue()
    from oauth_tasks.models import MaintenanceRun

    run = MaintenanceRun.objects.get(kind="adopt_dot")
    finished = wait_until(
        lambda: MaintenanceRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
        timeout=120,
        message="the adoption run to finish on the worker",
    )
    assert (finished.status, finished.last_error) == ("succeeded", "")
    assert finished.result["verified"] is True
    assert get_access_token_model().lookup(token["access_token"]) is not None
