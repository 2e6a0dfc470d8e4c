"""Client id and secret generators, and the key and time zone helpers."""

from __future__ import annotations

import zoneinfo

import pytest
from django.test import override_settings
from jwcrypto import jwk

from oauth_provider.crypto import get_timezone, jwk_from_pem
from oauth_provider.generators import (
    BaseHashGenerator,
    ClientIdGenerator,
    ClientSecretGenerator,
    generate_client_id,
    generate_client_secret,
)


class FixedPrefixGenerator(BaseHashGenerator):
    def hash(self) -> str:
        return "custom-" + ClientIdGenerator().hash()[:10]


def test_client_id_is_40_characters_without_a_colon():
    ids = {ClientIdGenerator().hash() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert len(value) == 40
        assert ":" not in value
        assert value.isascii() and value.isalnum()


def test_client_secret_has_the_configured_length():
    assert len(ClientSecretGenerator().hash()) == 128
    with override_settings(OAUTH2_PROVIDER={"CLIENT_SECRET_GENERATOR_LENGTH": 64}):
        assert len(generate_client_secret()) == 64


def test_base_generator_must_be_subclassed():
    with pytest.raises(NotImplementedError):
        BaseHashGenerator().hash()


def test_generator_classes_come_from_the_settings():
    with override_settings(
        OAUTH2_PROVIDER={
            "CLIENT_ID_GENERATOR_CLASS": "tests.test_generators.FixedPrefixGenerator",
            "CLIENT_SECRET_GENERATOR_CLASS": "tests.test_generators.FixedPrefixGenerator",
        }
    ):
        assert generate_client_id().startswith("custom-")
        assert generate_client_secret().startswith("custom-")
    assert not generate_client_id().startswith("custom-")


def test_jwk_from_pem_parses_and_caches():
    key = jwk.JWK.generate(kty="RSA", size=2048)
    pem = key.export_to_pem(private_key=True, password=None).decode()
    first = jwk_from_pem(pem)
    assert first.thumbprint() == key.thumbprint()
    assert jwk_from_pem(pem) is first


def test_get_timezone():
    assert get_timezone("Europe/Paris") == zoneinfo.ZoneInfo("Europe/Paris")
    assert get_timezone() == zoneinfo.ZoneInfo("UTC")
