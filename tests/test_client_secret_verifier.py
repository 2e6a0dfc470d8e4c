"""A hashed client secret verified once is not hashed again, and nothing else gets through.

Token requests go through Django's full stack to the token endpoint, with the secrets stored by
``CLIENT_SECRET_HASHER``: a real PBKDF2 hasher of ``PASSWORD_HASHERS`` that counts how often it
verifies (with fewer iterations, so the suite stays quick).
"""

from __future__ import annotations

import base64
import secrets

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from oauth_provider.client_secrets import MIN_LENGTH, verified_secrets
from oauth_provider.models import get_application_model
from oauth_provider.settings import oauth2_settings

pytestmark = pytest.mark.django_db


class CountingHasher(PBKDF2PasswordHasher):
    """PBKDF2, counting each verification: each one is a full hash."""

    algorithm = "pbkdf2_counting"
    iterations = 1000
    verified = 0

    def verify(self, password, encoded):
        CountingHasher.verified += 1
        return super().verify(password, encoded)


@pytest.fixture(autouse=True)
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = [*settings.PASSWORD_HASHERS, f"{__name__}.CountingHasher"]
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CLIENT_SECRET_HASHER": "pbkdf2_counting"}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CountingHasher.verified = 0
    verified_secrets.clear()
    yield
    verified_secrets.clear()


def register(secret: str | None = None):
    """A client credentials client; its secret stored hashed by CLIENT_SECRET_HASHER."""
    secret = secret or get_application_model()._meta.get_field("client_secret").get_default()
    application = get_application_model().objects.create(
        name="backend",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
    )
    assert application.client_secret.startswith("pbkdf2_counting$")
    return application, secret


def token_request(client_id: str, secret: str) -> int:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = Client().post(
        "/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}"
    )
    return response.status_code


def test_a_repeat_authentication_with_a_generated_secret_is_not_hashed_again():
    application, secret = register()
    assert len(secret) == 128
    assert token_request(application.client_id, secret) == 200
    assert token_request(application.client_id, secret) == 200
    assert token_request(application.client_id, secret) == 200
    assert CountingHasher.verified == 1


def test_a_wrong_secret_is_refused_after_the_right_one_was_remembered():
    application, secret = register()
    assert token_request(application.client_id, secret) == 200
    for wrong in (secret[:-1] + ("a" if secret[-1] != "a" else "b"), secret[:-1], secret + "x", ""):
        assert token_request(application.client_id, wrong) == 401
    assert CountingHasher.verified == 4  # the right one once, each non-empty wrong one in full


def test_a_rotated_secret_refuses_the_old_one_at_once():
    application, old = register()
    assert token_request(application.client_id, old) == 200
    assert token_request(application.client_id, old) == 200

    new = secrets.token_urlsafe(96)
    application.client_secret = new
    application.save()

    assert token_request(application.client_id, old) == 401
    assert token_request(application.client_id, new) == 200
    assert token_request(application.client_id, new) == 200
    assert token_request(application.client_id, old) == 401


def test_the_memory_is_per_client():
    first, secret = register()
    other, _ = register()
    assert token_request(first.client_id, secret) == 200
    assert token_request(other.client_id, secret) == 401


def test_a_short_secret_is_hashed_every_time():
    application, secret = register("s" * (MIN_LENGTH - 1))
    assert token_request(application.client_id, secret) == 200
    assert token_request(application.client_id, secret) == 200
    assert CountingHasher.verified == 2


def test_with_zero_seconds_every_authentication_is_hashed(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CLIENT_SECRET_VERIFY_CACHE_SECONDS": 0}
    application, secret = register()
    assert token_request(application.client_id, secret) == 200
    assert token_request(application.client_id, secret) == 200
    assert CountingHasher.verified == 2


def test_the_memory_is_bounded(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CLIENT_SECRET_VERIFY_CACHE_SIZE": 2}
    clients = [register() for _ in range(3)]
    for application, secret in clients:
        assert token_request(application.client_id, secret) == 200
    assert len(verified_secrets) == 2
    first, secret = clients[0]
    assert token_request(first.client_id, secret) == 200  # the oldest was forgotten
    assert CountingHasher.verified == 4


def test_what_is_remembered_is_no_secret():
    application, secret = register()
    assert token_request(application.client_id, secret) == 200
    remembered = b"".join(verified_secrets._entries)
    assert len(remembered) == 32 and secret.encode() not in remembered


@pytest.mark.parametrize("value", [-1, 1.5, "10", True])
def test_a_bad_cache_size_is_refused_by_name(settings, value):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CLIENT_SECRET_VERIFY_CACHE_SIZE": value}
    with pytest.raises(ImproperlyConfigured, match="CLIENT_SECRET_VERIFY_CACHE_SIZE"):
        oauth2_settings.CLIENT_SECRET_VERIFY_CACHE_SIZE


def test_an_unknown_watermark_cache_alias_is_refused_by_name(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REVOCATION_WATERMARK_CACHE": "nowhere"}
    with pytest.raises(ImproperlyConfigured, match="REVOCATION_WATERMARK_CACHE.*nowhere"):
        oauth2_settings.REVOCATION_WATERMARK_CACHE
