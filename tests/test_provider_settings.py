"""The settings object: django-oauth-toolkit's defaults, lazy imports and clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from oauth_provider.settings import DEFAULTS, OAuth2ProviderSettings, oauth2_settings

EXPECTED_DEFAULTS = {
    "CLIENT_SECRET_GENERATOR_LENGTH": 128,
    "ACCESS_TOKEN_GENERATOR": None,
    "REFRESH_TOKEN_GENERATOR": None,
    "EXTRA_SERVER_KWARGS": {},
    "SCOPES": {"read": "Reading scope", "write": "Writing scope"},
    "DEFAULT_SCOPES": ["__all__"],
    "READ_SCOPE": "read",
    "WRITE_SCOPE": "write",
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 36000,
    "ID_TOKEN_EXPIRE_SECONDS": 36000,
    "REFRESH_TOKEN_EXPIRE_SECONDS": None,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,  # off in django-oauth-toolkit
    "ROTATE_REFRESH_TOKEN": True,
    "ERROR_RESPONSE_WITH_SCOPES": False,
    "REQUEST_APPROVAL_PROMPT": "force",
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "ALLOWED_SCHEMES": ["https"],
    "OIDC_ENABLED": False,
    "OIDC_ISS_ENDPOINT": "",
    "OIDC_USERINFO_ENDPOINT": "",
    "OIDC_RSA_PRIVATE_KEY": "",
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [],
    "OIDC_JWKS_MAX_AGE_SECONDS": 3600,
    "OIDC_SUBJECT_TYPES_SUPPORTED": ["public"],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_post", "client_secret_basic"],
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": False,
    "RESOURCE_SERVER_INTROSPECTION_URL": None,
    "RESOURCE_SERVER_AUTH_TOKEN": None,
    "RESOURCE_SERVER_INTROSPECTION_CREDENTIALS": None,
    "RESOURCE_SERVER_TOKEN_CACHING_SECONDS": 36000,
    "PKCE_REQUIRED": True,
    "PKCE_CODE_CHALLENGE_METHODS": ["S256"],  # django-oauth-toolkit also takes plain
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": 10000,
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": 0,
}


@pytest.mark.parametrize("name, value", sorted(EXPECTED_DEFAULTS.items()))
def test_default_matches_django_oauth_toolkit(name, value):
    assert getattr(OAuth2ProviderSettings(user_settings={}), name) == value


def test_import_string_defaults_resolve_to_classes():
    fresh = OAuth2ProviderSettings(user_settings={})
    from oauthlib.oauth2 import Server

    from oauth_provider.generators import ClientIdGenerator, ClientSecretGenerator
    from oauth_provider.scopes import SettingsScopes

    assert fresh.CLIENT_ID_GENERATOR_CLASS is ClientIdGenerator
    assert fresh.CLIENT_SECRET_GENERATOR_CLASS is ClientSecretGenerator
    assert fresh.SCOPES_BACKEND_CLASS is SettingsScopes
    assert fresh.OAUTH2_SERVER_CLASS is Server


def test_oidc_enabled_switches_the_default_server_class():
    from oauthlib.openid import Server as OIDCServer

    assert OAuth2ProviderSettings(user_settings={"OIDC_ENABLED": True}).OAUTH2_SERVER_CLASS is OIDCServer


def test_model_settings_mirror_the_swappable_django_settings():
    assert oauth2_settings.APPLICATION_MODEL == "oauth_provider.Application"
    with override_settings(OAUTH2_PROVIDER_GRANT_MODEL="oauth_provider.Grant"):
        assert oauth2_settings.GRANT_MODEL == "oauth_provider.Grant"


def test_unknown_key_in_the_settings_dict_is_named():
    with override_settings(OAUTH2_PROVIDER={"ACCESS_TOKEN_EXPIRE_SECOND": 5}):
        with pytest.raises(ImproperlyConfigured, match="ACCESS_TOKEN_EXPIRE_SECOND"):
            oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS


def test_unknown_attribute_is_named():
    with pytest.raises(ImproperlyConfigured, match="NOT_A_SETTING"):
        OAuth2ProviderSettings(user_settings={}).NOT_A_SETTING


def test_bad_import_string_fails_only_on_access_and_names_the_key():
    lazy = OAuth2ProviderSettings(user_settings={"OAUTH2_VALIDATOR_CLASS": "no.such.module.Validator"})
    assert lazy.ACCESS_TOKEN_EXPIRE_SECONDS == 36000
    with pytest.raises(ImproperlyConfigured, match="OAUTH2_VALIDATOR_CLASS") as excinfo:
        lazy.OAUTH2_VALIDATOR_CLASS
    assert "no.such.module.Validator" in str(excinfo.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("REFRESH_TOKEN_GRACE_PERIOD_SECONDS", -1),
        ("REFRESH_TOKEN_EXPIRE_SECONDS", "soon"),
        ("CLEAR_EXPIRED_TOKENS_BATCH_SIZE", 0),
        ("CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL", -0.5),
        ("REQUEST_APPROVAL_PROMPT", "sometimes"),
        ("PKCE_REQUIRED", "yes"),
        ("PKCE_CODE_CHALLENGE_METHODS", ["S512"]),
        ("PKCE_CODE_CHALLENGE_METHODS", []),
        ("PKCE_CODE_CHALLENGE_METHODS", "S256"),
        ("RATE_LIMIT_FAILURES_PER_ADDRESS", -1),
        ("RATE_LIMIT_FAILURES_PER_CLIENT", "many"),
        ("RATE_LIMIT_WINDOW_SECONDS", 0),
        ("RATE_LIMIT_TRUSTED_PROXIES", 0),
    ],
)
def test_bad_values_are_improperly_configured_naming_the_key(name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        getattr(OAuth2ProviderSettings(user_settings={name: value}), name)


def test_timedelta_is_accepted_for_durations():
    assert OAuth2ProviderSettings(
        user_settings={"REFRESH_TOKEN_EXPIRE_SECONDS": timedelta(days=1)}
    ).REFRESH_TOKEN_EXPIRE_SECONDS == timedelta(days=1)


def test_pkce_required_as_bool_or_callable():
    assert OAuth2ProviderSettings(user_settings={}).pkce_required("any")
    assert not OAuth2ProviderSettings(user_settings={"PKCE_REQUIRED": False}).pkce_required("any")
    per_client = OAuth2ProviderSettings(user_settings={"PKCE_REQUIRED": lambda cid: cid.startswith("pub")})
    assert per_client.pkce_required("public-app")
    assert not per_client.pkce_required("server-app")


def test_default_scopes_must_be_known_scopes():
    bad = OAuth2ProviderSettings(user_settings={"DEFAULT_SCOPES": ["read", "admin"]})
    with pytest.raises(ImproperlyConfigured, match="DEFAULT_SCOPES"):
        bad._DEFAULT_SCOPES
    assert OAuth2ProviderSettings(user_settings={})._DEFAULT_SCOPES == ["read", "write"]


def test_settings_reload_when_overridden():
    assert oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS == 36000
    with override_settings(OAUTH2_PROVIDER={"ACCESS_TOKEN_EXPIRE_SECONDS": 42}):
        assert oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS == 42
    assert oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS == 36000


def test_server_kwargs_let_extra_server_kwargs_win():
    custom = OAuth2ProviderSettings(
        user_settings={"ACCESS_TOKEN_EXPIRE_SECONDS": 10, "EXTRA_SERVER_KWARGS": {"token_expires_in": 20}}
    )
    assert custom.server_kwargs["token_expires_in"] == 20
    assert custom.server_kwargs["refresh_token_expires_in"] is None


def test_every_default_key_is_documented_in_the_defaults_table():
    assert set(EXPECTED_DEFAULTS) <= set(DEFAULTS)
