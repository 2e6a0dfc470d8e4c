"""The provider's settings object.

Settings live in the ``OAUTH2_PROVIDER`` dict of the Django settings, with the names and defaults
of django-oauth-toolkit so a project moving over keeps its configuration. The swappable models are
top-level Django settings (``OAUTH2_PROVIDER_APPLICATION_MODEL``, ...) because Django's swappable
machinery needs them there; ``oauth2_settings.APPLICATION_MODEL`` and friends mirror them.

Import strings are imported on first access, not at start-up, so a settings module can name a class
of an app that is not loaded yet. Unknown keys and failed imports raise ``ImproperlyConfigured``
naming the key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

MODEL_SETTINGS = {
    "APPLICATION_MODEL": ("OAUTH2_PROVIDER_APPLICATION_MODEL", "oauth_provider.Application"),
    "ACCESS_TOKEN_MODEL": ("OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL", "oauth_provider.AccessToken"),
    "ID_TOKEN_MODEL": ("OAUTH2_PROVIDER_ID_TOKEN_MODEL", "oauth_provider.IDToken"),
    "GRANT_MODEL": ("OAUTH2_PROVIDER_GRANT_MODEL", "oauth_provider.Grant"),
    "REFRESH_TOKEN_MODEL": ("OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL", "oauth_provider.RefreshToken"),
}

# Django's migration autodetector reads a swappable setting from django.conf.settings directly, so
# a project that does not swap a model still needs the name defined there.
for _django_name, _default in MODEL_SETTINGS.values():
    if not hasattr(settings, _django_name):
        setattr(settings, _django_name, _default)

APPLICATION_MODEL = getattr(settings, "OAUTH2_PROVIDER_APPLICATION_MODEL", "oauth_provider.Application")
ACCESS_TOKEN_MODEL = getattr(settings, "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL", "oauth_provider.AccessToken")
ID_TOKEN_MODEL = getattr(settings, "OAUTH2_PROVIDER_ID_TOKEN_MODEL", "oauth_provider.IDToken")
GRANT_MODEL = getattr(settings, "OAUTH2_PROVIDER_GRANT_MODEL", "oauth_provider.Grant")
REFRESH_TOKEN_MODEL = getattr(settings, "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL", "oauth_provider.RefreshToken")

DEFAULTS: dict[str, Any] = {
    "CLIENT_ID_GENERATOR_CLASS": "oauth_provider.generators.ClientIdGenerator",
    "CLIENT_SECRET_GENERATOR_CLASS": "oauth_provider.generators.ClientSecretGenerator",
    "CLIENT_SECRET_GENERATOR_LENGTH": 128,
    "ACCESS_TOKEN_GENERATOR": None,
    "REFRESH_TOKEN_GENERATOR": None,
    "EXTRA_SERVER_KWARGS": {},
    "OAUTH2_SERVER_CLASS": "oauthlib.oauth2.Server",
    "OIDC_SERVER_CLASS": "oauthlib.openid.Server",
    "OAUTH2_VALIDATOR_CLASS": "oauth_provider.oauth2_validators.OAuth2Validator",
    "OAUTH2_BACKEND_CLASS": "oauth_provider.oauth2_backends.OAuthLibCore",
    "SCOPES": {"read": "Reading scope", "write": "Writing scope"},
    "DEFAULT_SCOPES": ["__all__"],
    "SCOPES_BACKEND_CLASS": "oauth_provider.scopes.SettingsScopes",
    "READ_SCOPE": "read",
    "WRITE_SCOPE": "write",
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 36000,
    "ID_TOKEN_EXPIRE_SECONDS": 36000,
    "REFRESH_TOKEN_EXPIRE_SECONDS": None,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": False,
    "ROTATE_REFRESH_TOKEN": True,
    "ERROR_RESPONSE_WITH_SCOPES": False,
    # Bounds of a requested ``scope`` parameter (not in django-oauth-toolkit, which has none).
    "SCOPE_MAX_LENGTH": 1000,
    "SCOPE_MAX_COUNT": 50,
    "APPLICATION_MODEL": APPLICATION_MODEL,
    "ACCESS_TOKEN_MODEL": ACCESS_TOKEN_MODEL,
    "ID_TOKEN_MODEL": ID_TOKEN_MODEL,
    "GRANT_MODEL": GRANT_MODEL,
    "REFRESH_TOKEN_MODEL": REFRESH_TOKEN_MODEL,
    "APPLICATION_ADMIN_CLASS": "oauth_provider.admin.ApplicationAdmin",
    "ACCESS_TOKEN_ADMIN_CLASS": "oauth_provider.admin.AccessTokenAdmin",
    "GRANT_ADMIN_CLASS": "oauth_provider.admin.GrantAdmin",
    "ID_TOKEN_ADMIN_CLASS": "oauth_provider.admin.IDTokenAdmin",
    "REFRESH_TOKEN_ADMIN_CLASS": "oauth_provider.admin.RefreshTokenAdmin",
    "REQUEST_APPROVAL_PROMPT": "force",
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "ALLOWED_SCHEMES": ["https"],
    "OIDC_ENABLED": False,
    "OIDC_ISS_ENDPOINT": "",
    "OIDC_USERINFO_ENDPOINT": "",
    "OIDC_RSA_PRIVATE_KEY": "",
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [],
    "OIDC_JWKS_MAX_AGE_SECONDS": 3600,
    "OIDC_RESPONSE_TYPES_SUPPORTED": [
        "code",
        "token",
        "id_token",
        "id_token token",
        "code token",
        "code id_token",
        "code id_token token",
    ],
    "OIDC_SUBJECT_TYPES_SUPPORTED": ["public"],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_post", "client_secret_basic"],
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": False,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": True,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": False,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": True,
    "OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS": True,
    # django-oauth-toolkit accepts an ID token as a bearer token; here only when this is on, and
    # then with every check of an access token (see tokens.id_token_problem).
    "OIDC_ID_TOKEN_AS_BEARER": False,
    # Evaluated at run time from SCOPES and DEFAULT_SCOPES.
    "_SCOPES": [],
    "_DEFAULT_SCOPES": [],
    # Resource server with token introspection.
    "RESOURCE_SERVER_INTROSPECTION_URL": None,
    "RESOURCE_SERVER_AUTH_TOKEN": None,
    "RESOURCE_SERVER_INTROSPECTION_CREDENTIALS": None,
    "RESOURCE_SERVER_TOKEN_CACHING_SECONDS": 36000,
    "AUTHENTICATION_SERVER_EXP_TIME_ZONE": "UTC",
    # A bool, or a callable taking the client id and returning a bool.
    "PKCE_REQUIRED": True,
    "ALWAYS_RELOAD_OAUTHLIB_CORE": False,
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": 10000,
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": 0,
}

MANDATORY = (
    "CLIENT_ID_GENERATOR_CLASS",
    "CLIENT_SECRET_GENERATOR_CLASS",
    "OAUTH2_SERVER_CLASS",
    "OAUTH2_VALIDATOR_CLASS",
    "OAUTH2_BACKEND_CLASS",
    "SCOPES",
    "ALLOWED_REDIRECT_URI_SCHEMES",
    "OIDC_RESPONSE_TYPES_SUPPORTED",
    "OIDC_SUBJECT_TYPES_SUPPORTED",
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED",
)

IMPORT_STRINGS = (
    "CLIENT_ID_GENERATOR_CLASS",
    "CLIENT_SECRET_GENERATOR_CLASS",
    "ACCESS_TOKEN_GENERATOR",
    "REFRESH_TOKEN_GENERATOR",
    "OAUTH2_SERVER_CLASS",
    "OIDC_SERVER_CLASS",
    "OAUTH2_VALIDATOR_CLASS",
    "OAUTH2_BACKEND_CLASS",
    "SCOPES_BACKEND_CLASS",
    "APPLICATION_ADMIN_CLASS",
    "ACCESS_TOKEN_ADMIN_CLASS",
    "GRANT_ADMIN_CLASS",
    "ID_TOKEN_ADMIN_CLASS",
    "REFRESH_TOKEN_ADMIN_CLASS",
)

# Settings that must be a non-negative number (None allowed where the default is None).
NON_NEGATIVE_NUMBERS = (
    "AUTHORIZATION_CODE_EXPIRE_SECONDS",
    "ACCESS_TOKEN_EXPIRE_SECONDS",
    "ID_TOKEN_EXPIRE_SECONDS",
    "REFRESH_TOKEN_EXPIRE_SECONDS",
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS",
    "CLIENT_SECRET_GENERATOR_LENGTH",
    "OIDC_JWKS_MAX_AGE_SECONDS",
    "RESOURCE_SERVER_TOKEN_CACHING_SECONDS",
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE",
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL",
)
# Settings that must be an integer of at least 1.
POSITIVE_INTEGERS = ("CLEAR_EXPIRED_TOKENS_BATCH_SIZE", "SCOPE_MAX_LENGTH", "SCOPE_MAX_COUNT")


def import_from_string(value: str, setting_name: str) -> Any:
    """Import ``value`` for ``setting_name``; a failure names both."""
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Could not import {value!r} for OAUTH2_PROVIDER setting {setting_name!r}: {exc}"
        ) from exc


class OAuth2ProviderSettings:
    """Attribute access to the provider settings, falling back to the defaults, cached per key."""

    def __init__(self, user_settings: dict | None = None, defaults: dict | None = None) -> None:
        if user_settings is not None:
            self._user_settings = user_settings
        self.defaults = defaults or DEFAULTS
        self._cached_attrs: set[str] = set()

    @property
    def user_settings(self) -> dict:
        if not hasattr(self, "_user_settings"):
            value = getattr(settings, "OAUTH2_PROVIDER", None) or {}
            if not isinstance(value, dict):
                raise ImproperlyConfigured("OAUTH2_PROVIDER must be a dict")
            unknown = sorted(set(value) - set(self.defaults))
            if unknown:
                raise ImproperlyConfigured(f"Unknown OAUTH2_PROVIDER setting(s): {', '.join(unknown)}")
            self._user_settings = value
        return self._user_settings

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in {"_user_settings", "defaults", "_cached_attrs"}:
            raise AttributeError(attr)
        if attr not in self.defaults:
            raise ImproperlyConfigured(f"Unknown OAUTH2_PROVIDER setting: {attr!r}")
        if attr in self.user_settings:
            val = self.user_settings[attr]
        elif attr in MODEL_SETTINGS:
            django_name, default = MODEL_SETTINGS[attr]
            val = getattr(settings, django_name, default)
        elif attr == "OAUTH2_SERVER_CLASS" and self.OIDC_ENABLED:
            # As in django-oauth-toolkit: with OIDC on and no explicit server class, the OIDC one.
            val = self.defaults["OIDC_SERVER_CLASS"]
        else:
            val = self.defaults[attr]

        if val and attr in IMPORT_STRINGS and isinstance(val, str):
            val = import_from_string(val, attr)

        if attr == "_SCOPES":
            val = list(self.SCOPES.keys())
        elif attr == "_DEFAULT_SCOPES":
            if "__all__" in self.DEFAULT_SCOPES:
                val = list(self._SCOPES)
            else:
                missing = [s for s in self.DEFAULT_SCOPES if s not in self._SCOPES]
                if missing:
                    raise ImproperlyConfigured(
                        f"OAUTH2_PROVIDER setting 'DEFAULT_SCOPES' names scopes not in SCOPES: {missing}"
                    )
                val = list(self.DEFAULT_SCOPES)

        self.validate_setting(attr, val)
        self._cached_attrs.add(attr)
        setattr(self, attr, val)
        return val

    def validate_setting(self, attr: str, val: Any) -> None:
        if not val and attr in MANDATORY:
            raise ImproperlyConfigured(f"OAUTH2_PROVIDER setting {attr!r} is mandatory")
        if attr in NON_NEGATIVE_NUMBERS and val is not None:
            if isinstance(val, timedelta):
                val = val.total_seconds()
            if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
                raise ImproperlyConfigured(
                    f"OAUTH2_PROVIDER setting {attr!r} must be a non-negative number, got {val!r}"
                )
        if attr in POSITIVE_INTEGERS and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
            raise ImproperlyConfigured(
                f"OAUTH2_PROVIDER setting {attr!r} must be a positive integer, got {val!r}"
            )
        if attr == "REQUEST_APPROVAL_PROMPT" and val not in ("force", "auto"):
            raise ImproperlyConfigured(
                f"OAUTH2_PROVIDER setting 'REQUEST_APPROVAL_PROMPT' must be 'force' or 'auto', got {val!r}"
            )
        if attr == "PKCE_REQUIRED" and not (isinstance(val, bool) or callable(val)):
            raise ImproperlyConfigured(
                f"OAUTH2_PROVIDER setting 'PKCE_REQUIRED' must be a bool or a callable, got {val!r}"
            )

    @property
    def server_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for oauthlib's server class, with EXTRA_SERVER_KWARGS last."""
        kwargs = {
            "token_expires_in": self.ACCESS_TOKEN_EXPIRE_SECONDS,
            "refresh_token_expires_in": self.REFRESH_TOKEN_EXPIRE_SECONDS,
            "token_generator": self.ACCESS_TOKEN_GENERATOR,
            "refresh_token_generator": self.REFRESH_TOKEN_GENERATOR,
        }
        kwargs.update(self.EXTRA_SERVER_KWARGS)
        return kwargs

    def pkce_required(self, client_id: str) -> bool:
        value = self.PKCE_REQUIRED
        return bool(value(client_id)) if callable(value) else bool(value)

    def reload(self) -> None:
        for attr in self._cached_attrs:
            try:
                delattr(self, attr)
            except AttributeError:
                pass
        self._cached_attrs.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


oauth2_settings = OAuth2ProviderSettings()


def reload_oauth2_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "OAUTH2_PROVIDER" or setting.startswith("OAUTH2_PROVIDER_"):
        oauth2_settings.reload()


setting_changed.connect(reload_oauth2_settings)
