"""A django-oauth-toolkit 3.4 ``OAUTH2_PROVIDER`` dict loads, and the settings object acts as DOT's."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from oauthlib.common import Request as OAuthlibRequest

from oauth_provider.settings import NOT_BUILT, OAuth2ProviderSettings, oauth2_settings, perform_import
from oauth_provider.views import OAuthLibMixin

from .factories import make_application

# Keys of a DOT 3.4 settings file this provider does not know under another name.
DOT_SETTINGS = {
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": True,
    "CLIENT_SECRET_HASHER": "default",
    "OIDC_RP_INITIATED_REGISTRATION_ENABLED": False,
    "OAUTH_PRE_TOKEN_VALIDATION": [],
    "DCR_ENABLED": True,
    "DEVICE_FLOW_INTERVAL": 10,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "OAUTH2_PROTECTED_RESOURCE_NAME": "api",
}


def test_a_dot_settings_file_loads_and_every_key_reads(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **DOT_SETTINGS}
    for key, value in DOT_SETTINGS.items():
        assert getattr(oauth2_settings, key) == value


def test_keys_of_features_not_built_are_a_warning_naming_the_key(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **DOT_SETTINGS}
    warnings = [m for m in run_checks() if m.id == "oauth_provider.W001"]

    named = {key for key in NOT_BUILT if any(repr(key) in w.msg for w in warnings)}
    assert named == {
        "DCR_ENABLED",
        "DEVICE_FLOW_INTERVAL",
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD",
        "OAUTH2_PROTECTED_RESOURCE_NAME",
    }
    assert all(w.level < 40 for w in warnings)  # warnings, not errors


def test_no_warning_for_a_project_that_sets_none_of_them(settings):
    assert [m for m in run_checks() if m.id == "oauth_provider.W001"] == []


def test_a_typo_is_still_a_configuration_error(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ACCESS_TOKEN_EXPIRE_SECOND": 10}
    with pytest.raises(ImproperlyConfigured, match="ACCESS_TOKEN_EXPIRE_SECOND"):
        oauth2_settings.SCOPES


def test_getattr_with_a_default_returns_the_default_for_an_unknown_attribute():
    assert getattr(oauth2_settings, "NO_SUCH_THING", "fallback") == "fallback"
    with pytest.raises(AttributeError, match="Invalid OAuth2Provider setting: NO_SUCH_THING"):
        oauth2_settings.NO_SUCH_THING


def test_a_bad_import_string_raises_dots_import_error():
    broken = OAuth2ProviderSettings({"CLIENT_ID_GENERATOR_CLASS": "invalid_module.InvalidClassName"})
    with pytest.raises(ImportError) as excinfo:
        broken.CLIENT_ID_GENERATOR_CLASS
    assert str(excinfo.value).startswith(
        "Could not import 'invalid_module.InvalidClassName' for setting 'CLIENT_ID_GENERATOR_CLASS'. "
        "ModuleNotFoundError:"
    )
    assert isinstance(excinfo.value, ImproperlyConfigured)


def test_perform_import_takes_strings_lists_and_classes():
    assert perform_import(None, "X") is None
    assert perform_import(["oauth_provider.views.TokenView"], "X") == [
        perform_import("oauth_provider.views.TokenView", "X")
    ]
    assert perform_import(OAuthLibMixin, "X") is OAuthLibMixin


def test_oidc_issuer_from_a_django_or_an_oauthlib_request(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": ""}
    settings.ALLOWED_HOSTS = ["idp.example"]
    django_request = RequestFactory().get("/", HTTP_HOST="idp.example")
    assert oauth2_settings.oidc_issuer(django_request) == "http://idp.example/o"
    oauthlib_request = OAuthlibRequest("http://idp.example/o/token/", headers={"HTTP_HOST": "idp.example"})
    assert oauth2_settings.oidc_issuer(oauthlib_request) == "http://idp.example/o"
    with pytest.raises(TypeError):
        oauth2_settings.oidc_issuer(None)


def test_oidc_issuer_is_the_configured_one_when_set(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": "https://idp.example/o"}
    assert oauth2_settings.oidc_issuer(RequestFactory().get("/")) == "https://idp.example/o"


class ProjectOIDCServer:
    def __init__(self, validator, **kwargs):
        self.validator = validator


def test_the_projects_oidc_server_class_is_used_when_oidc_is_on(settings):
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OIDC_ENABLED": True,
        "OIDC_SERVER_CLASS": f"{__name__}.ProjectOIDCServer",
    }
    assert oauth2_settings.OAUTH2_SERVER_CLASS is ProjectOIDCServer
    assert isinstance(OAuthLibMixin.get_server(), ProjectOIDCServer)


@pytest.mark.django_db
def test_client_secrets_are_hashed_with_the_configured_hasher(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "CLIENT_SECRET_HASHER": "pbkdf2_sha1"}
    application = make_application(client_secret="a-secret-of-the-client")
    application.refresh_from_db()
    assert application.client_secret.startswith("pbkdf2_sha1$")
    assert application.check_client_secret("a-secret-of-the-client")
