"""HTTP helpers: the scheme-checked redirect to a client, and the issuer URL of this provider."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from django.core.exceptions import DisallowedRedirect
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.utils.encoding import iri_to_uri
from oauthlib.common import Request as OAuthlibRequest

from .settings import oauth2_settings

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"

# The challenge of a failed client authentication (RFC 6749 5.2): clients authenticate with Basic.
CLIENT_CHALLENGE = 'Basic realm="oauth2"'


class OAuth2ResponseRedirect(HttpResponse):
    """A 302 to a client's redirect URI, allowed only for the given schemes.

    Django's ``HttpResponseRedirect`` allows a fixed set of schemes; clients register custom
    schemes (native apps), so the allowed list comes from ``ALLOWED_REDIRECT_URI_SCHEMES``.
    """

    status_code = 302

    def __init__(self, redirect_to: str, allowed_schemes: list[str], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self["Location"] = iri_to_uri(redirect_to)
        scheme = urlsplit(str(redirect_to)).scheme
        if not scheme:
            raise DisallowedRedirect("OAuth2 redirects require a URI scheme.")
        if scheme.lower() not in {s.lower() for s in allowed_schemes}:
            raise DisallowedRedirect(f"Redirect to scheme {scheme!r} is not permitted")

    @property
    def url(self) -> str:
        return self["Location"]


def csrf_failure_response(request: HttpRequest) -> HttpResponse | None:
    """Django's CSRF check, run by a view that is exempt from the middleware's: the 403 of
    ``CSRF_FAILURE_VIEW`` when the request fails it, None when it passes (or is a safe method).

    For views that take either a session or credentials of their own: they are CSRF exempt so that
    the credentialed requests pass, and check the session requests with this.
    """
    return CsrfViewMiddleware(lambda _request: HttpResponse()).process_view(request, None, (), {})


def oidc_issuer(request: HttpRequest | OAuthlibRequest) -> str:
    """The ``iss`` of this provider: ``OIDC_ISS_ENDPOINT`` or derived from the request's host.

    Derived, it is the URL the discovery document is served under, minus the well-known suffix,
    so that ``{iss}/.well-known/openid-configuration`` resolves (OpenID Connect Discovery 4).
    """
    if oauth2_settings.OIDC_ISS_ENDPOINT:
        return oauth2_settings.OIDC_ISS_ENDPOINT
    if isinstance(request, HttpRequest):
        django_request = request
    else:
        django_request = HttpRequest()
        django_request.META = dict(request.headers)
        if request.headers.get("X_OAUTH_PROVIDER_SECURE") == "1":
            django_request.META["wsgi.url_scheme"] = "https"
            django_request._get_scheme = lambda: "https"  # type: ignore[method-assign]
    url = django_request.build_absolute_uri(reverse("oauth2_provider:oidc-connect-discovery-info"))
    return url[: -len(DISCOVERY_SUFFIX)]


def with_issuer(uri: str, issuer: str) -> str:
    """``uri`` with the RFC 9207 ``iss`` parameter, beside the other authorization response parameters.

    Those are in the fragment for the implicit and hybrid flows, in the query otherwise.
    """
    parts = urlsplit(uri)
    param = urlencode({"iss": issuer})
    if "=" in parts.fragment:
        return urlunsplit(parts._replace(fragment=f"{parts.fragment}&{param}"))
    query = f"{parts.query}&{param}" if parts.query else param
    return urlunsplit(parts._replace(query=query))


def refused_resource_response(error: dict | None, scopes: list[str] | None = None) -> HttpResponse:
    """How a protected resource refuses a request: a bare 403 as django-oauth-toolkit, or the
    RFC 6750 answer of :func:`bearer_error_response` with ``RESOURCE_SERVER_BEARER_CHALLENGE``."""
    if not oauth2_settings.RESOURCE_SERVER_BEARER_CHALLENGE:
        return HttpResponseForbidden()
    return bearer_error_response(error, scopes)


def bearer_error_response(error: dict | None, scopes: list[str] | None = None) -> HttpResponse:
    """The RFC 6750 3.1 answer to a failed bearer check.

    No credentials: 401 with a bare ``Bearer`` challenge. A bad token: 401 ``invalid_token``.
    A good token lacking scope: 403 ``insufficient_scope`` naming the scopes needed.
    """
    challenge = ['Bearer realm="oauth2"']
    body: dict[str, str] = {}
    status = 401
    if error and error.get("error"):
        body = {key: str(value) for key, value in error.items()}
        challenge.append(f'error="{body["error"]}"')
        if body.get("error_description"):
            challenge.append('error_description="{}"'.format(body["error_description"].replace('"', "'")))
        if body["error"] == "insufficient_scope":
            status = 403
            if scopes:
                challenge.append('scope="{}"'.format(" ".join(scopes)))
    response = JsonResponse(body or {"detail": "A bearer token is required."}, status=status)
    response["WWW-Authenticate"] = ", ".join(challenge)
    return response
