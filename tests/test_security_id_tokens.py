"""An ID token is not a credential, and a revocation is in force for every credential at once.

Attacks over real HTTP against ``live_server``: an ID token presented as a bearer token, an ID
token whose access token was revoked, a code issued before a revocation, and an ID token forged
with one client's own key naming another client's ID token.
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests
from django.contrib.auth.models import Permission
from django.urls import include, path
from jwcrypto import jwk, jwt
from jwcrypto.common import base64url_encode
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_grant_model, get_id_token_model
from oauth_tasks.models import MaintenanceRun

from . import test_endpoints_support as support
from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    provider_settings,
    query_of,
)

urlpatterns = [*support.urlpatterns, path("maintenance/", include("oauth_tasks.urls"))]
RUNS = "/maintenance/api/runs/"


@pytest.fixture(name="site")
def site_fixture(base_url, settings) -> str:
    settings.ROOT_URLCONF = __name__
    return base_url


def operator(username: str = "alice"):
    """A staff user who may watch and start maintenance runs."""
    user = support.make_staff_user(username)
    for codename in ("view_maintenancerun", "add_maintenancerun"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def authorization_code(site: str, browser: requests.Session, client, scope: str) -> tuple[OAuth2Session, str]:
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=scope.split(), pkce="S256")
    url, _state = oauth.authorization_url(f"{site}/o/authorize/", nonce=secrets.token_urlsafe(16))
    return oauth, consent(browser, url).headers["Location"]


def login_tokens(site: str, browser: requests.Session, client, scope: str = "openid maintenance") -> dict:
    """Tokens of the browser's user for ``client`` by the code flow, an ID token among them."""
    oauth, location = authorization_code(site, browser, client, scope)
    token = oauth.fetch_token(
        f"{site}/o/token/", authorization_response=location, client_secret=client.secret
    )
    assert token["id_token"]
    return token


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def api_status(site: str, value: str) -> int:
    return requests.get(f"{site}{RUNS}", headers=bearer(value)).status_code


def start_revocation(site: str, value: str, params: dict) -> requests.Response:
    return requests.post(f"{site}{RUNS}", json={"kind": "revoke", "params": params}, headers=bearer(value))


def signed_in(site: str, **client_fields):
    user = operator()
    client = make_client(algorithm="RS256", **client_fields)
    browser = browser_login(site, user.username)
    return user, client, browser


def test_an_id_token_is_not_a_bearer_token(site):
    _user, client, browser = signed_in(site)
    token = login_tokens(site, browser, client)
    assert api_status(site, token["access_token"]) == 200

    id_token = token["id_token"]

    listed = requests.get(f"{site}{RUNS}", headers=bearer(id_token))
    assert listed.status_code == 401
    assert 'error="invalid_token"' in listed.headers["WWW-Authenticate"]
    started = requests.post(f"{site}{RUNS}", json={"kind": "cleanup"}, headers=bearer(id_token))
    assert started.status_code == 401
    assert not MaintenanceRun.objects.exists()
    for resource in ("/api/whoami/", "/o/userinfo/"):
        assert requests.get(f"{site}{resource}", headers=bearer(id_token)).status_code == 401, resource
    assert requests.get(f"{site}/api/me/", headers=bearer(id_token)).json() == {"user": None}


def test_an_id_token_accepted_for_compatibility_dies_with_its_revoked_access_token(site, settings):
    provider_settings(settings, OIDC_ID_TOKEN_AS_BEARER=True)
    _user, client, browser = signed_in(site)
    token = login_tokens(site, browser, client)
    assert api_status(site, token["id_token"]) == 200

    revoked = requests.post(
        f"{site}/o/revoke_token/",
        data={"token": token["access_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert revoked.status_code == 200
    assert api_status(site, token["access_token"]) == 401
    assert api_status(site, token["id_token"]) == 401
    assert start_revocation(site, token["id_token"], {"user": "alice"}).status_code == 401


def test_an_id_token_accepted_for_compatibility_is_refused_once_a_revocation_starts(site, settings):
    provider_settings(settings, OIDC_ID_TOKEN_AS_BEARER=True)
    user, client, browser = signed_in(site)
    token = login_tokens(site, browser, client)
    other = make_client(algorithm="RS256")
    other_token = login_tokens(site, browser, other)
    assert api_status(site, other_token["id_token"]) == 200

    # The ID token is the user's last credential of ``other`` once the revocation starts.
    started = start_revocation(site, token["access_token"], {"user": user.username})

    assert started.status_code == 202
    assert api_status(site, other_token["access_token"]) == 401
    assert api_status(site, other_token["id_token"]) == 401
    assert (
        start_revocation(site, other_token["id_token"], {"application": other.client_id}).status_code == 401
    )
    assert MaintenanceRun.objects.count() == 1


def test_an_id_token_accepted_for_compatibility_is_refused_for_an_inactive_user(site, settings):
    provider_settings(settings, OIDC_ID_TOKEN_AS_BEARER=True)
    user, client, browser = signed_in(site)
    token = login_tokens(site, browser, client)
    assert api_status(site, token["id_token"]) == 200

    user.is_active = False
    user.save()

    assert api_status(site, token["id_token"]) == 401


def test_a_code_issued_before_a_revocation_cannot_be_exchanged(site):
    user, client, browser = signed_in(site)
    admin_token = login_tokens(site, browser, make_client(algorithm="RS256"))
    oauth, location = authorization_code(site, browser, client, "openid maintenance")
    assert get_grant_model().objects.filter(user=user, application=client.application).exists()

    assert start_revocation(site, admin_token["access_token"], {"user": user.username}).status_code == 202
    exchanged = requests.post(
        f"{site}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": oauth._code_verifier,
        },
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert exchanged.status_code == 400
    assert exchanged.json()["error"] == "invalid_grant"
    # A new sign-in after the revocation is not affected by it.
    assert api_status(site, login_tokens(site, browser, client)["access_token"]) == 200


def test_an_id_token_signed_with_one_clients_key_cannot_borrow_another_clients_id_token(site, settings):
    provider_settings(settings, OIDC_ID_TOKEN_AS_BEARER=True)
    _user, client, browser = signed_in(site)
    login_tokens(site, browser, client)  # the operator's ID token, of ``client``
    victim = get_id_token_model().objects.get(application=client.application)
    # The attacker owns an HS256 client: its secret is the key of its ID tokens.
    attacker = make_client(algorithm="HS256", hash_client_secret=False)
    issuer = requests.get(f"{site}/o/.well-known/openid-configuration").json()["issuer"]
    now = int(time.time())
    claims = {"iss": issuer, "aud": attacker.client_id, "sub": str(victim.user_id), "iat": now}
    claims.update(exp=now + 600, jti=str(victim.jti))
    forged = jwt.JWT(header={"alg": "HS256", "typ": "JWT"}, claims=claims)
    forged.make_signed_token(jwk.JWK(kty="oct", k=base64url_encode(attacker.secret)))

    response = requests.get(f"{site}{RUNS}", headers=bearer(forged.serialize()))

    assert response.status_code == 401
