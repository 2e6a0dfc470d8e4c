"""OpenID Connect over HTTP: discovery, JWKS, ID tokens verified by the client, userinfo."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

import pytest
import requests
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    make_staff_user,
    query_of,
)


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def openid_login(base_url: str, client, scope=("openid", "read")) -> tuple[dict, str, object]:
    user = make_staff_user()
    browser = browser_login(base_url, user.username)
    nonce = secrets.token_urlsafe(16)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=list(scope), pkce="S256")
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/", nonce=nonce)
    redirect = consent(browser, url)
    token = oauth.fetch_token(
        f"{base_url}/o/token/",
        authorization_response=redirect.headers["Location"],
        client_secret=client.secret,
    )
    return token, nonce, user


def test_discovery_document_points_at_the_endpoints(base_url):
    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()

    assert config["issuer"] == f"{base_url}/o"
    assert config["authorization_endpoint"] == f"{base_url}/o/authorize/"
    assert config["token_endpoint"] == f"{base_url}/o/token/"
    assert config["jwks_uri"] == f"{base_url}/o/.well-known/jwks.json"
    assert config["userinfo_endpoint"] == f"{base_url}/o/userinfo/"
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["authorization_response_iss_parameter_supported"] is True


def test_rs256_id_token_verified_with_keys_from_the_jwks_url(base_url):
    client = make_client(algorithm="RS256")
    token, nonce, user = openid_login(base_url, client)

    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    keys = jwk.JWKSet.from_json(requests.get(config["jwks_uri"]).text)
    verified = jwt.JWT(jwt=token["id_token"], key=keys, algs=["RS256"])
    claims = json.loads(verified.claims)
    header = json.loads(verified.header)

    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == config["issuer"]
    assert claims["aud"] == client.client_id
    assert claims["sub"] == str(user.pk)
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == at_hash(token["access_token"])
    assert claims["exp"] > claims["iat"]


def test_id_token_signed_by_another_key_does_not_verify(base_url):
    client = make_client(algorithm="RS256")
    token, _nonce, _user = openid_login(base_url, client)
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    stranger_set = jwk.JWKSet()
    stranger_set.add(stranger)

    with pytest.raises(JWException):
        jwt.JWT(jwt=token["id_token"], key=stranger_set, algs=["RS256"])


def test_hs256_id_token_verified_with_the_client_secret(base_url):
    client = make_client(algorithm="HS256", hash_client_secret=False)
    token, nonce, _user = openid_login(base_url, client)

    key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(client.secret.encode()).rstrip(b"=").decode())
    claims = json.loads(jwt.JWT(jwt=token["id_token"], key=key, algs=["HS256"]).claims)

    assert claims["nonce"] == nonce
    assert claims["aud"] == client.client_id


def test_userinfo_returns_claims_for_an_openid_token_only(base_url):
    client = make_client(algorithm="RS256")
    token, _nonce, user = openid_login(base_url, client)

    info = requests.get(
        f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert info.status_code == 200
    assert info.json()["sub"] == str(user.pk)
    assert "email" not in info.json()  # the email scope was not granted

    plain = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    read_only = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=HTTPBasicAuth(plain.client_id, plain.secret),
    ).json()["access_token"]
    refused = requests.get(f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {read_only}"})
    assert refused.status_code in (401, 403)


def test_refresh_issues_a_new_id_token(base_url):
    client = make_client(algorithm="RS256")
    token, _nonce, _user = openid_login(base_url, client)

    refreshed = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    ).json()

    keys = jwk.JWKSet.from_json(requests.get(f"{base_url}/o/.well-known/jwks.json").text)
    claims = json.loads(jwt.JWT(jwt=refreshed["id_token"], key=keys, algs=["RS256"]).claims)
    assert claims["at_hash"] == at_hash(refreshed["access_token"])


def test_prompt_none_without_consent_redirects_consent_required(base_url):
    client = make_client(algorithm="RS256")
    user = make_staff_user()
    browser = browser_login(base_url, user.username)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["openid"], pkce="S256")
    url, state = oauth.authorization_url(f"{base_url}/o/authorize/", prompt="none")

    response = browser.get(url, allow_redirects=False)

    assert response.status_code == 302
    assert query_of(response.headers["Location"]) == {
        "error": "consent_required",
        "state": state,
        "iss": f"{base_url}/o",
    }
