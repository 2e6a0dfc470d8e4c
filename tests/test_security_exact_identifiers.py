"""Credentials and identifiers match only byte for byte, whatever the database's collation.

MySQL and MariaDB compare text case-insensitively by default (``utf8mb4_general_ci``), so a lookup
of ``ABC`` finds ``abc``. Each test here presents a real credential with the case of its letters
changed, over HTTP, and expects it refused; then the real one still works, so the refusal was the
case change's. They run on every backend; on MariaDB and MySQL they are the attack.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from django.db import connection
from django.utils import timezone
from requests.auth import HTTPBasicAuth

from oauth_provider.models import get_application_model, get_grant_model

from .factories import make_application, make_user
from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    make_staff_user,
    pkce_pair,
    query_of,
)


def other_case(value: str) -> str:
    changed = value.swapcase()
    assert changed != value and changed.lower() == value.lower(), "the value needs letters"
    return changed


def authorization_code(base_url: str, client, browser) -> tuple[str, str]:
    """A fresh authorization code of ``client`` and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "read",
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    redirect = consent(browser, f"{base_url}/o/authorize/?{query}")
    assert redirect.status_code == 302, redirect.text[:300]
    return query_of(redirect.headers["Location"])["code"], verifier


def exchange(base_url: str, client, code: str, verifier: str) -> requests.Response:
    return requests.post(
        f"{base_url}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )


def test_an_authorization_code_with_its_letters_case_changed_is_refused(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    code, verifier = authorization_code(base_url, client, browser)

    forged = exchange(base_url, client, other_case(code), verifier)

    assert forged.status_code == 400, forged.text
    assert forged.json()["error"] == "invalid_grant"
    assert "access_token" not in forged.json()
    # Not consumed by the attempt: the real code is still good, once.
    assert get_grant_model().objects.get(code=code).consumed is None
    real = exchange(base_url, client, code, verifier)
    assert real.status_code == 200, real.text
    assert real.json()["access_token"]


def test_two_codes_differing_only_in_case_are_two_grants(db):
    """The unique index compares exactly too: ``abc`` next to ``ABC`` is not a duplicate."""
    user = make_user()
    application = make_application(user)
    code = "Code-" + secrets.token_urlsafe(16)
    first, second = (
        get_grant_model().objects.create(
            application=application,
            user=user,
            code=value,
            expires=timezone.now() + timedelta(minutes=1),
            redirect_uri=REDIRECT_URI,
        )
        for value in (code, other_case(code))
    )

    assert first.pk != second.pk
    assert get_grant_model().objects.get(code=code).pk == first.pk
    assert get_grant_model().objects.get(code=other_case(code)).pk == second.pk


def test_a_client_id_with_its_letters_case_changed_does_not_authenticate(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    forged_id = other_case(client.client_id)

    for auth in (
        {"auth": HTTPBasicAuth(forged_id, client.secret)},
        {"data": {"client_id": forged_id, "client_secret": client.secret}},
    ):
        data = {"grant_type": "client_credentials", **auth.pop("data", {})}
        forged = requests.post(f"{base_url}/o/token/", data=data, **auth)
        assert forged.status_code == 401, forged.text
        assert forged.json()["error"] == "invalid_client"

    real = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert real.status_code == 200, real.text


def test_the_authorization_endpoint_does_not_know_a_client_id_with_its_case_changed(base_url):
    user = make_staff_user()
    client = make_client(client_type=get_application_model().CLIENT_PUBLIC)
    browser = browser_login(base_url, user.username)
    query = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "read",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }

    forged = browser.get(
        f"{base_url}/o/authorize/?{urlencode({**query, 'client_id': other_case(client.client_id)})}",
        allow_redirects=False,
    )

    # An unknown client is never redirected to (its redirect URI cannot be trusted): an error page.
    assert forged.status_code == 400, (forged.status_code, forged.headers.get("Location"))
    assert 'id="authorizationForm"' not in forged.text
    real_query = urlencode({**query, "client_id": client.client_id})
    real = browser.get(f"{base_url}/o/authorize/?{real_query}", allow_redirects=False)
    assert real.status_code == 200
    assert 'id="authorizationForm"' in real.text


def test_an_access_token_or_refresh_token_with_its_letters_case_changed_is_refused(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    code, verifier = authorization_code(base_url, client, browser)
    tokens = exchange(base_url, client, code, verifier).json()

    forged_bearer = requests.get(
        f"{base_url}/api/whoami/", headers={"Authorization": f"Bearer {other_case(tokens['access_token'])}"}
    )
    assert forged_bearer.status_code == 401
    forged_refresh = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": other_case(tokens["refresh_token"])},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert forged_refresh.status_code == 400, forged_refresh.text
    assert forged_refresh.json()["error"] == "invalid_grant"

    real_bearer = requests.get(
        f"{base_url}/api/whoami/", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert real_bearer.status_code == 200
    real_refresh = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert real_refresh.status_code == 200, real_refresh.text


def test_identifier_columns_compare_exactly_on_mysql(db):
    """The columns themselves carry the binary collation on MySQL and MariaDB (none elsewhere)."""
    application_model, grant_model = get_application_model(), get_grant_model()
    columns = {
        (application_model._meta.db_table, "client_id"),
        (grant_model._meta.db_table, "code"),
    }
    if connection.vendor != "mysql":
        pytest.skip("PostgreSQL and SQLite compare text exactly without a collation")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND (table_name, column_name) IN ((%s, %s), (%s, %s))",
            [value for pair in sorted(columns) for value in pair],
        )
        found = {(table, column): collation for table, column, collation in cursor.fetchall()}
    assert found == {pair: "utf8mb4_bin" for pair in columns}
