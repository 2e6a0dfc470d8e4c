"""The provider's settings object.

Settings live in the ``OAUTH2_PROVIDER`` dict of the Django settings, with the names and defaults
of django-oauth-toolkit so a project moving over keeps its configuration. The swappable models are
top-level Django settings (``OAUTH2_PROVIDER_APPLICATION_MODEL``, ...) because Django's swappable
machinery needs them there; ``oauth2_settings.APPLICATION_MODEL`` and friends mirror them.

Every key of django-oauth-toolkit 3.4 is accepted. Keys of DOT features this provider does not have
(the device grant, dynamic client registration, client ID metadata documents, RFC 8414/9728
metadata, RFC 8707 resource indicators, the RFC 9700 gates) load and are reported by a system check
warning naming them when set (``oauth_provider.W001``), instead of failing the start-up.

Import strings are imported on first access, not at start-up, so a settings module can name a class
of an app that is not loaded yet. A failed import raises ``ImportError`` with django-oauth-toolkit's
message, which is also an ``ImproperlyConfigured``. A key unknown to both DOT and this provider
(a typo) raises ``ImproperlyConfigured`` naming it; reading an unknown attribute raises
``AttributeError``, so ``getattr(oauth2_settings, "X", default)`` works as with DOT.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest
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
    # A hasher name of PASSWORD_HASHERS ("default": the first one) for the stored client secrets.
    "CLIENT_SECRET_HASHER": "default",
    # How long a process remembers a hashed client secret it verified (0: hash on every
    # authentication), and how many it remembers; see oauth_provider.client_secrets.
    "CLIENT_SECRET_VERIFY_CACHE_SECONDS": 300,
    "CLIENT_SECRET_VERIFY_CACHE_SIZE": 1000,
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
    # On here, off in django-oauth-toolkit: a replayed rotated refresh token revokes its family.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
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
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": False,
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
    "OIDC_RP_INITIATED_REGISTRATION_ENABLED": False,
    "OIDC_RP_INITIATED_REGISTRATION_URL": None,
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
    # How a protected resource refuses a request: False, a bare 403 as django-oauth-toolkit;
    # True, RFC 6750 3.1 (401 with a WWW-Authenticate challenge, 403 insufficient_scope).
    "RESOURCE_SERVER_BEARER_CHALLENGE": False,
    # A bool, or a callable taking the client id and returning a bool.
    "PKCE_REQUIRED": True,
    # The PKCE methods accepted and advertised; django-oauth-toolkit also takes "plain".
    "PKCE_CODE_CHALLENGE_METHODS": ["S256"],
    "ALWAYS_RELOAD_OAUTHLIB_CORE": False,
    # Failed client authentications and password checks allowed per window (None or 0: no limit).
    "RATE_LIMIT_FAILURES_PER_ADDRESS": 20,
    "RATE_LIMIT_FAILURES_PER_CLIENT": 50,
    "RATE_LIMIT_WINDOW_SECONDS": 300,
    "RATE_LIMIT_CACHE": "default",
    # A request.META key set by trusted proxies (HTTP_X_FORWARDED_FOR); None: REMOTE_ADDR.
    "RATE_LIMIT_ADDRESS_HEADER": None,
    "RATE_LIMIT_TRUSTED_PROXIES": 1,
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": 10000,
    "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": 0,
    # The cache holding the generation of the revocation watermarks each process keeps in memory
    # (see watermark_cache); None, or a per-process cache: every token check queries them.
    "REVOCATION_WATERMARK_CACHE": "default",
    # The longest a process uses its copy of a watermark without reading it again (0: no copy).
    "REVOCATION_WATERMARK_CACHE_SECONDS": 30,
}

# django-oauth-toolkit 3.4 keys of features this provider does not have, with DOT's defaults (import
# strings of DOT modules left as None). Accepted so a DOT settings file loads; a system check warns
# about each one a project sets (checks.py).
NOT_BUILT: dict[str, Any] = {
    # Device authorization grant (RFC 8628).
    "DEVICE_GRANT_MODEL": "oauth_provider.DeviceGrant",
    "DEVICE_FLOW_INTERVAL": 5,
    "OAUTH_DEVICE_VERIFICATION_URI": None,
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": None,
    "OAUTH_DEVICE_USER_CODE_GENERATOR": None,
    "OAUTH_PRE_TOKEN_VALIDATION": [],
    # RFC 8707 resource indicators on the resource server.
    "RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR": None,
    # RFC 9700 behaviour and configuration gates.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": False,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": False,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": False,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": False,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": False,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": False,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": False,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": False,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": False,
    # Dynamic client registration (RFC 7591/7592).
    "DCR_ENABLED": False,
    "DCR_REGISTRATION_PERMISSION_CLASSES": (),
    "DCR_REGISTRATION_SCOPE": "oauth2_provider:registration",
    "DCR_REGISTRATION_TOKEN_EXPIRE_SECONDS": None,
    "DCR_ROTATE_REGISTRATION_TOKEN_ON_UPDATE": True,
    # Client ID metadata documents.
    "CIMD_ENABLED": False,
    "CIMD_METADATA_FETCHER": None,
    "CIMD_REGISTRATION_PERMISSION_CLASSES": (),
    "CIMD_ALLOWED_HOSTS": [],
    "CIMD_FETCH_TIMEOUT_SECONDS": 5,
    "CIMD_MAX_DOCUMENT_SIZE": 16 * 1024,
    "CIMD_METADATA_MIN_AGE_SECONDS": 300,
    "CIMD_METADATA_MAX_AGE_SECONDS": 86400,
    "CIMD_FAILURE_BACKOFF_SECONDS": 60,
    "CIMD_MAX_CONCURRENT_FETCHES": 10,
    # RFC 8414 authorization server metadata.
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code", "token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_post", "client_secret_basic"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": [
        "authorization_code",
        "implicit",
        "password",
        "client_credentials",
        "refresh_token",
    ],
    # RFC 9728 protected resource metadata.
    "OAUTH2_PROTECTED_RESOURCE_IDENTIFIER": "",
    "OAUTH2_PROTECTED_RESOURCE_AUTHORIZATION_SERVERS": [],
    "OAUTH2_PROTECTED_RESOURCE_BEARER_METHODS_SUPPORTED": ["header"],
    "OAUTH2_PROTECTED_RESOURCE_NAME": "",
    "OAUTH2_PROTECTED_RESOURCE_DOCUMENTATION": "",
    "OAUTH2_PROTECTED_RESOURCE_POLICY_URI": "",
    "OAUTH2_PROTECTED_RESOURCE_TOS_URI": "",
}
DEFAULTS.update(NOT_BUILT)

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
    "RATE_LIMIT_FAILURES_PER_ADDRESS",
    "RATE_LIMIT_FAILURES_PER_CLIENT",
    "REVOCATION_WATERMARK_CACHE_SECONDS",
    "CLIENT_SECRET_VERIFY_CACHE_SECONDS",
)

# Settings that must be an integer of at least 1.
POSITIVE_INTEGERS = (
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE",
    "SCOPE_MAX_LENGTH",
    "SCOPE_MAX_COUNT",
    "RATE_LIMIT_WINDOW_SECONDS",
    "RATE_LIMIT_TRUSTED_PROXIES",
)


class SettingImportError(ImportError, ImproperlyConfigured):
    """An import string of a setting that does not import: DOT's ImportError, and a configuration error."""


class UnknownSettingError(AttributeError, ImproperlyConfigured):
    """An attribute that is no setting: ``getattr(oauth2_settings, name, default)`` gives the default."""


def import_from_string(value: str, setting_name: str) -> Any:
    """Import ``value`` for ``setting_name``; a failure names both, in django-oauth-toolkit's words."""
    try:
        return import_string(value)
    except ImportError as exc:
        raise SettingImportError(
            f"Could not import {value!r} for setting {setting_name!r}. {exc.__class__.__name__}: {exc}."
        ) from exc


def perform_import(value: Any, setting_name: str) -> Any:
    """Import a string, or each string of a list; anything else (None, a class) as it is."""
    if isinstance(value, str):
        return import_from_string(value, setting_name)
    if isinstance(value, list | tuple):
        return [import_from_string(item, setting_name) if isinstance(item, str) else item for item in value]
    return value


class OAuth2ProviderSettings:
    """Attribute access to the provider settings, falling back to the defaults, cached per key."""

    def __init__(
        self,
        user_settings: dict | None = None,
        defaults: dict | None = None,
        import_strings: tuple[str, ...] | None = None,
        mandatory: tuple[str, ...] | None = None,
    ) -> None:
        if user_settings is not None:
            self._user_settings = user_settings
        self.defaults = defaults or DEFAULTS
        self.import_strings = import_strings or IMPORT_STRINGS
        self.mandatory = MANDATORY if mandatory is None else mandatory
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
            raise UnknownSettingError(f"Invalid OAuth2Provider setting: {attr}")
        if attr in self.user_settings:
            val = self.user_settings[attr]
        elif attr in MODEL_SETTINGS:
            django_name, default = MODEL_SETTINGS[attr]
            val = getattr(settings, django_name, default)
        elif attr == "OAUTH2_SERVER_CLASS" and self.OIDC_ENABLED:
            # As in django-oauth-toolkit: with OIDC on and no explicit server class, the OIDC one
            # (OIDC_SERVER_CLASS as the project sets it).
            val = self.user_settings.get("OIDC_SERVER_CLASS", self.defaults["OIDC_SERVER_CLASS"])
        else:
            val = self.defaults[attr]

        if val and attr in self.import_strings:
            val = perform_import(val, attr)

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
        if not val and attr in self.mandatory:
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
        if attr == "PKCE_CODE_CHALLENGE_METHODS" and (
            not isinstance(val, (list, tuple)) or not val or not set(val) <= {"S256", "plain"}
        ):
            raise ImproperlyConfigured(
                "OAUTH2_PROVIDER setting 'PKCE_CODE_CHALLENGE_METHODS' must be a non-empty list of "
                f"'S256' and 'plain', got {val!r}"
            )
        if attr == "CLIENT_SECRET_VERIFY_CACHE_SIZE" and (
            isinstance(val, bool) or not isinstance(val, int) or val < 0
        ):
            raise ImproperlyConfigured(
                f"OAUTH2_PROVIDER setting 'CLIENT_SECRET_VERIFY_CACHE_SIZE' must be a non-negative integer, "
                f"got {val!r}"
            )
        if attr == "REVOCATION_WATERMARK_CACHE" and val is not None:
            if not isinstance(val, str) or val not in settings.CACHES:
                raise ImproperlyConfigured(
                    "OAUTH2_PROVIDER setting 'REVOCATION_WATERMARK_CACHE' must be None or name a cache "
                    f"of CACHES ({', '.join(sorted(settings.CACHES))}), got {val!r}"
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

    def oidc_issuer(self, request) -> str:
        """The issuer: ``OIDC_ISS_ENDPOINT``, or built from a Django or oauthlib request."""
        from oauthlib.common import Request as OAuthlibRequest

        from .http import oidc_issuer

        if not isinstance(request, HttpRequest | OAuthlibRequest):
            raise TypeError(f"request must be a django or oauthlib request: got {request!r}")
        return oidc_issuer(request)

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
