"""A resource server checking foreign tokens at a remote introspection endpoint, as DOT does.

The remote authorization server is a small real HTTP server on loopback that answers RFC 7662
JSON and records what it was sent; the resource server is the provider under ``live_server``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
from django.contrib.auth import get_user_model

from oauth_provider.models import get_access_token_model

from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    provider_settings,
)


class AuthorizationServer:
    """Answers ``answers[token]`` (default inactive) and records each request's token and headers."""

    def __init__(self) -> None:
        self.answers: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                token = parse_qs(self.rfile.read(length).decode()).get("token", [""])[0]
                server.requests.append((token, dict(self.headers)))
                body = json.dumps(server.answers.get(token, {"active": False})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/o/introspect/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def remote(settings):
    server = AuthorizationServer()
    provider_settings(
        settings, RESOURCE_SERVER_INTROSPECTION_URL=server.url, RESOURCE_SERVER_AUTH_TOKEN="rs-secret-token"
    )
    yield server
    server.stop()


def read(base_url: str, token: str) -> requests.Response:
    return requests.get(f"{base_url}/api/read/", headers={"Authorization": f"Bearer {token}"})


def test_an_active_foreign_token_is_accepted_and_cached(base_url, remote):
    remote.answers["foreign-1"] = {
        "active": True,
        "scope": "read write",
        "username": "remote-user",
        "exp": int(time.time()) + 600,
    }

    first = read(base_url, "foreign-1")
    assert first.status_code == 200, first.text
    assert first.json() == {"scope": "read write"}
    token, headers = remote.requests[0]
    assert token == "foreign-1"
    assert headers["Authorization"] == "Bearer rs-secret-token"
    assert get_user_model().objects.filter(username="remote-user").exists()

    assert read(base_url, "foreign-1").status_code == 200
    assert len(remote.requests) == 1  # the second request used the cached answer


def test_the_cache_lasts_at_most_the_caching_seconds(base_url, remote, settings):
    provider_settings(settings, RESOURCE_SERVER_TOKEN_CACHING_SECONDS=60)
    remote.answers["foreign-2"] = {"active": True, "scope": "read", "exp": int(time.time()) + 86400}
    assert read(base_url, "foreign-2").status_code == 200
    cached = get_access_token_model().lookup("foreign-2")
    assert cached.application is None
    assert 0 < (cached.expires.timestamp() - time.time()) <= 60


def test_an_inactive_or_under_scoped_answer_is_refused(base_url, remote):
    assert read(base_url, "unknown-anywhere").status_code in (401, 403)
    remote.answers["write-only"] = {"active": True, "scope": "write", "exp": int(time.time()) + 600}
    assert read(base_url, "write-only").status_code == 403


def test_basic_credentials_when_configured(base_url, remote, settings):
    provider_settings(
        settings,
        RESOURCE_SERVER_AUTH_TOKEN=None,
        RESOURCE_SERVER_INTROSPECTION_CREDENTIALS=("rs-client", "rs:secret"),
    )
    read(base_url, "any")
    _token, headers = remote.requests[0]
    assert headers["Authorization"].startswith("Basic ")


def test_an_unreachable_server_refuses_the_token(base_url, remote):
    remote.stop()
    assert read(base_url, "foreign-3").status_code in (401, 403)


@pytest.mark.django_db
def test_dots_validator_method_asks_the_server_it_is_given(remote, settings):
    from datetime import UTC, datetime

    from oauth_provider.oauth2_validators import OAuth2Validator

    exp = int(time.time()) + 120
    remote.answers["foreign-2"] = {"active": True, "scope": "read", "username": "remote-2", "exp": exp}
    validator = OAuth2Validator()

    token = validator._get_token_from_authentication_server("foreign-2", remote.url, None, ("rs", "s3cret"))
    unknown = validator._get_token_from_authentication_server("nobody", remote.url, "rs-token", None)

    assert token.user.username == "remote-2" and token.scope == "read" and token.application is None
    assert token.expires == datetime.fromtimestamp(exp, tz=UTC)
    assert unknown is None
    assert remote.requests[0][1]["Authorization"].startswith("Basic ")
    assert remote.requests[1][1]["Authorization"] == "Bearer rs-token"


@pytest.mark.django_db
def test_a_non_utc_exp_time_zone_reads_exp_as_wall_clock_time_there(remote, settings):
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from oauth_provider.oauth2_validators import OAuth2Validator

    provider_settings(settings, AUTHENTICATION_SERVER_EXP_TIME_ZONE="Europe/Amsterdam")
    exp = int(time.time()) + 1800
    remote.answers["foreign-3"] = {"active": True, "scope": "read", "exp": exp}

    token = OAuth2Validator()._get_token_from_authentication_server("foreign-3", remote.url, "t", None)

    wall_clock = datetime.fromtimestamp(exp, tz=UTC).replace(tzinfo=None)
    assert token.expires == wall_clock.replace(tzinfo=ZoneInfo("Europe/Amsterdam"))
