"""OIDC-only views: 404 when OpenID Connect is off, ImproperlyConfigured under DEBUG, as DOT."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory
from django.views.generic import View

from oauth_provider.compat import login_not_required
from oauth_provider.views.mixins import OIDCLogoutOnlyMixin, OIDCOnlyMixin


class OIDCView(OIDCOnlyMixin, View):
    def get(self, request):
        return HttpResponse("ok")


class LogoutView(OIDCLogoutOnlyMixin, View):
    def get(self, request):
        return HttpResponse("ok")


@pytest.mark.parametrize("view", [OIDCView, LogoutView])
def test_off_is_404_in_production_and_improperly_configured_in_debug(settings, view):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ENABLED": False}
    request = RequestFactory().get("/")
    settings.DEBUG = False
    assert view.as_view()(request).status_code == 404  # answered, with a warning logged, as DOT
    settings.DEBUG = True
    with pytest.raises(ImproperlyConfigured, match="not enabled"):
        view.as_view()(request)


def test_logout_view_needs_rp_initiated_logout_enabled_too(settings):
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OIDC_ENABLED": True,
        "OIDC_RP_INITIATED_LOGOUT_ENABLED": False,
    }
    assert LogoutView.as_view()(RequestFactory().get("/")).status_code == 404
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RP_INITIATED_LOGOUT_ENABLED": True}
    assert LogoutView.as_view()(RequestFactory().get("/")).content == b"ok"


def test_compat_login_not_required_is_djangos():
    from django.contrib.auth.decorators import login_not_required as djangos

    assert login_not_required is djangos
