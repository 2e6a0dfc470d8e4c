"""No token, code, secret or hint reaches any line gunicorn writes, the access log included.

The provider runs under a real gunicorn started with the run command's own ``web`` command line,
against the test database. A full OpenID Connect flow goes through it over HTTP, with every value
that may be sent in a query string sent there; then every line gunicorn wrote (access log and error
log, both log formats) is searched for every secret value the flow saw.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
from requests_oauthlib import OAuth2Session

from config import run
from oauth_tasks.logging import MASK
from tests.gunicorn_server import Gunicorn
from tests.test_endpoints_support import (
    PASSWORD,
    REDIRECT_URI,
    browser_login,
    consent,
    make_client,
    make_staff_user,
    query_of,
)


@pytest.fixture
def gunicorn_factory(transactional_db, tmp_path, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the OAuth client, over plain HTTP
    servers: list[Gunicorn] = []

    def start(log_format: str) -> Gunicorn:
        server = Gunicorn(
            tmp_path / f"gunicorn-{log_format}.log",
            {
                "LOG_FORMAT": log_format,
                "LOG_LEVEL": "DEBUG",  # the most an operator can ask gunicorn and Django to say
                **run.plain_http_defaults("127.0.0.1"),
            },
        )
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def full_flow(base: str) -> dict[str, str]:
    """Sign in, consent, code exchange with PKCE, userinfo, introspection, refresh, API, logout and
    revocation, with tokens and hints in query strings wherever an endpoint accepts them. Returns
    every secret value the flow saw, by name."""
    user = make_staff_user("alice")
    user.is_superuser = True
    user.save()
    client = make_client(algorithm="RS256")
    seen: dict[str, str] = {"password": PASSWORD, "client_secret": client.secret}
    seen["basic"] = base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()

    browser = browser_login(base, user.username)
    seen["sessionid"] = browser.cookies["sessionid"]
    seen["csrftoken"] = browser.cookies["csrftoken"]
    scope = ["openid", "read", "write", "maintenance"]
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=scope, pkce="S256")
    url, _state = oauth.authorization_url(f"{base}/o/authorize/")
    seen["code_verifier"] = oauth._code_verifier
    redirect = consent(browser, url)
    location = redirect.headers["Location"]
    seen["code"] = query_of(location)["code"]
    token = oauth.fetch_token(
        f"{base}/o/token/", authorization_response=location, client_secret=client.secret
    )
    seen.update(access_token=token["access_token"], refresh_token=token["refresh_token"])
    seen["id_token"] = token["id_token"]
    # The client's callback page links back to the provider: the code travels in the Referer.
    requests.get(f"{base}/o/.well-known/openid-configuration", headers={"Referer": location}, timeout=30)

    access = token["access_token"]
    info = requests.get(f"{base}/o/userinfo/", params={"access_token": access}, timeout=30)
    assert info.status_code == 200, info.text
    auth = (client.client_id, client.secret)
    introspection = requests.get(f"{base}/o/introspect/", params={"token": access}, auth=auth, timeout=30)
    assert introspection.status_code == 200 and introspection.json()["active"] is True, introspection.text
    api = requests.get(f"{base}/maintenance/api/runs/", params={"access_token": access}, timeout=30)
    seen["api_status"] = str(api.status_code)  # not a secret: kept out of the search below

    refreshed = oauth.refresh_token(f"{base}/o/token/", auth=auth)
    seen.update(new_access_token=refreshed["access_token"], new_refresh_token=refreshed["refresh_token"])
    if "id_token" in refreshed:
        seen["new_id_token"] = refreshed["id_token"]
    # A mistyped path with the token in the query: a 404 is logged too.
    requests.get(f"{base}/o/userinfo-typo/", params={"access_token": refreshed["access_token"]}, timeout=30)

    logout = browser.get(
        f"{base}/o/logout/",
        params={"id_token_hint": token["id_token"], "post_logout_redirect_uri": REDIRECT_URI, "state": "s"},
        allow_redirects=False,
        timeout=30,
    )
    assert logout.status_code < 500, logout.text[:300]
    revoked = requests.post(
        f"{base}/o/revoke_token/", data={"token": refreshed["refresh_token"]}, auth=auth, timeout=30
    )
    assert revoked.status_code == 200, revoked.text
    seen.pop("api_status")
    return seen


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_a_full_flow_leaves_no_secret_in_any_gunicorn_line(gunicorn_factory, log_format):
    server = gunicorn_factory(log_format)

    seen = full_flow(server.url)
    output = server.stop()

    lines = output.splitlines()
    request_lines = [line for line in lines if "/o/userinfo/" in line]
    assert request_lines, f"gunicorn wrote no access line for the userinfo request:\n{output[-3000:]}"
    if log_format == "json":
        assert all(json.loads(line)["message"] for line in request_lines)
    leaks = {
        name: [line for line in lines if value in line][:2] for name, value in seen.items() if value in output
    }
    assert not leaks, f"secret values in gunicorn's output: {leaks}"
    assert f"access_token={MASK}" in output and f"token={MASK}" in output
    assert f"id_token_hint={MASK}" in output
