"""Transport security with DEBUG off: production settings pass ``check --deploy``, plain HTTP is
redirected to https, cookies are Secure, HSTS is sent, and behind a TLS-terminating proxy the
issuer is advertised as https.

The settings are the ones a deployment gets: ``.env.example`` with the compose file's environment
of the web service, read by a fresh process (``manage.py check --deploy``, a real gunicorn).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT
from tests.deployment import deployment_environment
from tests.gunicorn_server import Gunicorn
from tests.test_endpoints_support import PASSWORD, make_staff_user

PROXY = {"X-Forwarded-Proto": "https", "Host": "auth.example.com"}


def test_the_deployment_settings_pass_check_deploy_without_a_warning(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DEBUG", "DATABASE"))},
        **deployment_environment(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert env["DEBUG"] == "false"
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.fixture
def production_web(transactional_db, tmp_path):
    env = deployment_environment(tmp_path)
    for name in ("DATABASE_URL", "HOST", "PORT", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)  # the test database and broker, and the test's own port
    # The proxy is another container: gunicorn itself trusts X-Forwarded-Proto from loopback only,
    # so the scheme must come from Django's SECURE_PROXY_SSL_HEADER, as in the deployment.
    env["FORWARDED_ALLOW_IPS"] = "192.0.2.1"
    server = Gunicorn(tmp_path / "gunicorn.log", env)
    server.wait_ready()
    yield server
    server.stop()


def test_plain_http_is_redirected_to_https_and_never_gets_a_cookie(production_web):
    response = requests.get(f"{production_web.url}/admin/login/", allow_redirects=False, timeout=30)

    assert response.status_code == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{production_web.port}/admin/login/"
    assert "Set-Cookie" not in response.headers


def test_behind_the_tls_proxy_cookies_are_secure_and_hsts_is_sent(production_web):
    response = requests.get(f"{production_web.url}/admin/login/", headers=PROXY, timeout=30)

    assert response.status_code == 200, response.text[:300]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf_cookie = response.headers["Set-Cookie"]
    assert csrf_cookie.startswith("csrftoken=") and "; Secure" in csrf_cookie, csrf_cookie
    # Sign in through the proxy: the session cookie is Secure too. (A client keeps Secure cookies
    # for https, so the test hands the CSRF cookie back itself, as the browser behind TLS would.)
    make_staff_user("alice")
    csrf = response.cookies["csrftoken"]
    login = requests.post(
        f"{production_web.url}/admin/login/",
        data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/admin/"},
        headers={**PROXY, "Referer": "https://auth.example.com/admin/login/", "Cookie": f"csrftoken={csrf}"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 302, login.text[:500]
    session_cookie = next(c for c in login.raw.headers.getlist("Set-Cookie") if c.startswith("sessionid="))
    assert "; Secure" in session_cookie and "; HttpOnly" in session_cookie, session_cookie


def test_behind_the_tls_proxy_the_issuer_and_every_endpoint_are_https(production_web):
    discovery = requests.get(
        f"{production_web.url}/o/.well-known/openid-configuration", headers=PROXY, timeout=30
    ).json()

    assert discovery["issuer"].startswith("https://auth.example.com/")
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert discovery[name].startswith("https://auth.example.com/"), (name, discovery[name])


def test_the_container_health_check_still_answers_over_plain_http(production_web):
    response = requests.get(
        f"{production_web.url}/maintenance/health/?check=database", allow_redirects=False, timeout=30
    )

    assert response.status_code == 200, (response.status_code, response.text[:300])
