"""The OAuth2 endpoints: authorization (with the consent form), token and revocation."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import FormView, View

from .. import authentication, tokens
from ..exceptions import OAuthToolkitError
from ..http import CLIENT_CHALLENGE, OAuth2ResponseRedirect, oidc_issuer, with_issuer
from ..models import get_access_token_model, get_application_model
from ..scopes import get_scopes_backend
from ..settings import oauth2_settings
from ..signals import app_authorized
from .forms import AllowForm
from .mixins import OAuthLibMixin, answer_rate_limited

log = logging.getLogger(__name__)

# The OAuth2 parameters the consent form carries from the GET to the POST.
CARRIED_CREDENTIALS = ("code_challenge", "code_challenge_method", "nonce", "claims")


# The view asks for a login itself (LoginRequiredMixin, or login_required for prompt=none), so
# Django's LoginRequiredMiddleware must leave it alone.
@method_decorator(login_not_required, name="dispatch")
class BaseAuthorizationView(LoginRequiredMixin, OAuthLibMixin, View):
    """The authorization endpoint (RFC 6749 4.1.1) without a consent strategy."""

    def error_response(self, error: OAuthToolkitError, application=None, **kwargs) -> HttpResponse:
        """Redirect the error to the client, unless the client or redirect URI is not trusted."""
        redirect, error_response = super().error_response(error, **kwargs)
        if redirect:
            return self.redirect(error_response["url"], application)
        return self.render_to_response(error_response, status=error_response["error"].status_code)

    def redirect(self, redirect_to: str, application=None) -> OAuth2ResponseRedirect:
        schemes = (
            application.get_allowed_schemes()
            if application is not None
            else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
        )
        # RFC 9207: the client can tell which provider answered (a mix-up attack defence).
        return OAuth2ResponseRedirect(with_issuer(redirect_to, oidc_issuer(self.request)), schemes)


@method_decorator(never_cache, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class AuthorizationView(BaseAuthorizationView, FormView):
    """Asks the logged-in user to allow the client, then redirects with a code (or error).

    The form is skipped for ``skip_authorization`` applications, and with
    ``REQUEST_APPROVAL_PROMPT = "auto"`` (or ``approval_prompt=auto``) when a live token of the
    same application and user already covers the requested scopes.
    """

    template_name = "oauth2_provider/authorize.html"
    form_class = AllowForm

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.oauth2_data: dict[str, Any] = {}
        return super().dispatch(request, *args, **kwargs)

    def handle_no_permission(self) -> HttpResponse:
        """``prompt=none`` without a session is ``login_required`` for the client (OIDC Core 3.1.2.6).

        ``prompt=create`` sends the visitor to the registration page first (``handle_prompt_create``).
        """
        if "create" in self.request.GET.get("prompt", "").split():
            response = self.handle_prompt_create()
            if response is not None:
                return response
        if "none" in self.request.GET.get("prompt", "").split():
            try:
                _scopes, credentials = self.validate_authorization_request(self.request)
            except OAuthToolkitError as error:
                return self.error_response(error)
            return self._redirect_error(credentials, "login_required")
        return self._login_redirect()

    def handle_prompt_create(self) -> HttpResponse | None:
        """``prompt=create`` (OpenID Connect Prompt Create 1.0), as django-oauth-toolkit.

        Refused with ``invalid_request`` unless ``OIDC_RP_INITIATED_REGISTRATION_ENABLED``. Enabled,
        a signed-in user goes on as without it (None); a visitor is sent, once the request is
        validated, to ``OIDC_RP_INITIATED_REGISTRATION_URL`` (a URL name, path or absolute URL)
        with ``next`` back here, ``create`` taken out of ``prompt``.
        """
        if not oauth2_settings.OIDC_RP_INITIATED_REGISTRATION_ENABLED:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "prompt=create is not supported"},
                status=400,
            )
        if self.request.user.is_authenticated:
            return None
        location = oauth2_settings.OIDC_RP_INITIATED_REGISTRATION_URL
        if not location:
            raise ImproperlyConfigured(
                "OIDC_RP_INITIATED_REGISTRATION_URL must be set when "
                "OIDC_RP_INITIATED_REGISTRATION_ENABLED is True."
            )
        try:
            registration_url = resolve_url(location)
        except NoReverseMatch as exc:
            raise ImproperlyConfigured(
                f"OIDC_RP_INITIATED_REGISTRATION_URL {location!r} could not be resolved "
                "to a registration page."
            ) from exc
        try:
            self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error)
        query = self.request.GET.copy()
        prompt = [value for value in query.get("prompt", "").split() if value != "create"]
        if prompt:
            query["prompt"] = " ".join(prompt)
        else:
            query.pop("prompt", None)
        next_url = self.request.build_absolute_uri(f"{self.request.path}?{query.urlencode()}")
        parts = urlsplit(registration_url)
        params = [*parse_qsl(parts.query), ("next", next_url)]
        return HttpResponseRedirect(urlunsplit(parts._replace(query=urlencode(params))))

    def _login_redirect(self) -> HttpResponse:
        """To the login page, back here afterwards without ``login`` in ``prompt``: the sign-in that
        the page asks for is the one ``prompt=login`` wants, and asking again would loop."""
        query = self.request.GET.copy()
        prompt = [value for value in query.get("prompt", "").split() if value != "login"]
        if prompt:
            query["prompt"] = " ".join(prompt)
        else:
            query.pop("prompt", None)
        return redirect_to_login(
            f"{self.request.path}?{query.urlencode()}", self.get_login_url(), self.get_redirect_field_name()
        )

    def _redirect_error(self, credentials: dict[str, Any], error: str, description: str = "") -> HttpResponse:
        application = get_application_model().objects.get(client_id=credentials["client_id"])
        params = {"error": error}
        if description:
            params["error_description"] = description
        if credentials.get("state"):
            params["state"] = credentials["state"]
        uri = credentials["redirect_uri"]
        return self.redirect(f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}", application)

    def get_initial(self) -> dict[str, Any]:
        data = self.oauth2_data
        return {
            "redirect_uri": data.get("redirect_uri"),
            "scope": " ".join(data.get("scopes", [])),
            "client_id": data.get("client_id"),
            "state": data.get("state"),
            "response_type": data.get("response_type"),
            **{key: data.get(key) for key in CARRIED_CREDENTIALS},
        }

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error)

        if "create" in request.GET.get("prompt", "").split():
            refused = self.handle_prompt_create()  # a signed-in user goes on as without it
            if refused is not None:
                return refused
        reauthentication = self._reauthentication(request, credentials)
        if reauthentication is not None:
            return reauthentication
        application = get_application_model().objects.get(client_id=credentials["client_id"])
        all_scopes = get_scopes_backend().get_all_scopes()
        context = {
            "application": application,
            "scopes": scopes,
            "scopes_descriptions": [all_scopes.get(scope, scope) for scope in scopes],
            "scope_items": [{"name": scope, "description": all_scopes.get(scope, scope)} for scope in scopes],
            "client_id": credentials["client_id"],
            "redirect_uri": credentials["redirect_uri"],
            "response_type": credentials["response_type"],
            "state": credentials.get("state"),
        }
        for key in CARRIED_CREDENTIALS:
            if credentials.get(key):
                value = credentials[key]
                context[key] = json.dumps(value) if key == "claims" else value
        self.oauth2_data = context
        if isinstance(credentials.get("ui_locales"), list):
            credentials["ui_locales"] = " ".join(credentials["ui_locales"])

        try:
            if application.skip_authorization or self._previously_approved(request, application, scopes):
                uri, _headers, _body, _status = self.create_authorization_response(
                    request, " ".join(scopes), credentials, allow=True
                )
                return self.redirect(uri, application)
        except OAuthToolkitError as error:
            return self.error_response(error, application)

        if "none" in request.GET.get("prompt", "").split():
            return self._redirect_error(credentials, "consent_required")
        context["form"] = self.get_form()
        return self.render_to_response(self.get_context_data(**context))

    def _reauthentication(self, request: HttpRequest, credentials: dict[str, Any]) -> HttpResponse | None:
        """Send the user to sign in again for ``prompt=login`` or a ``max_age`` already passed.

        OpenID Connect Core 3.1.2.1: the session is ended and the user signs in afresh; the
        request then continues without ``login`` in ``prompt`` (so it does not loop), and the ID
        token's ``auth_time`` is the new sign-in. With ``prompt=none`` the client gets
        ``login_required`` instead. None when the session may be used as it is.
        """
        prompt = request.GET.get("prompt", "").split()
        max_age = request.GET.get("max_age")
        if max_age is not None:
            if not max_age.isdigit():
                return self._redirect_error(
                    credentials, "invalid_request", "max_age must be a non-negative integer."
                )
            auth_time = authentication.session_auth_time(request)
            too_old = auth_time is None or (timezone.now() - auth_time).total_seconds() > int(max_age)
        else:
            too_old = False
        if "login" not in prompt and not too_old:
            return None
        if "none" in prompt:
            return self._redirect_error(credentials, "login_required")
        logout(request)
        return self._login_redirect()

    def _previously_approved(self, request: HttpRequest, application, scopes: list[str]) -> bool:
        """``auto`` approval: a usable token of this user and application covers the scopes."""
        prompt = request.GET.get("approval_prompt", oauth2_settings.REQUEST_APPROVAL_PROMPT)
        if prompt != "auto":
            return False
        candidates = get_access_token_model().objects.filter(
            user=request.user, application=application, expires__gt=timezone.now()
        )
        return any(tokens.is_token_usable(token, scopes) for token in candidates.iterator())

    def form_valid(self, form: AllowForm) -> HttpResponse:
        data = form.cleaned_data
        application = get_application_model().objects.filter(client_id=data["client_id"]).first()
        credentials: dict[str, Any] = {
            "client_id": data["client_id"],
            "redirect_uri": data["redirect_uri"],
            "response_type": data["response_type"],
            "state": data.get("state") or None,
        }
        for key in CARRIED_CREDENTIALS:
            if data.get(key):
                credentials[key] = json.loads(data[key]) if key == "claims" else data[key]
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                self.request, data["scope"], credentials, allow=data["allow"]
            )
        except OAuthToolkitError as error:
            return self.error_response(error, application)
        return self.redirect(uri, application)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(answer_rate_limited, name="dispatch")
class TokenView(OAuthLibMixin, View):
    """The token endpoint (RFC 6749 3.2): code, client credentials, password and refresh grants."""

    @method_decorator(sensitive_post_parameters("password", "client_secret", "refresh_token", "code"))
    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        _url, headers, body, status = self.create_token_response(request)
        if status == 200 and app_authorized.has_listeners(self):
            # Read back only for a receiver: a query per token request otherwise spent on nothing.
            raw = json.loads(body).get("access_token")
            token = get_access_token_model().lookup(raw) if raw else None
            if token is not None:
                app_authorized.send(sender=self, request=request, token=token)
        response = HttpResponse(content=body, status=status, content_type="application/json")
        copy_headers(response, headers, status)
        # RFC 6749 5.1: token responses must not be cached.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(answer_rate_limited, name="dispatch")
class RevokeTokenView(OAuthLibMixin, View):
    """Token revocation (RFC 7009): 200 for any token, known or not, of the authenticated client."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        _url, headers, body, status = self.create_revocation_response(request)
        response = HttpResponse(content=body or "", status=status)
        copy_headers(response, headers, status)
        return response


def copy_headers(response: HttpResponse, headers: dict[str, str], status: int) -> None:
    """oauthlib's headers onto the response; a 401 challenges for client credentials.

    oauthlib answers a failed client authentication with a ``Bearer`` challenge; RFC 6749 5.2
    wants the scheme the client authenticates with, ``Basic``.
    """
    for key, value in headers.items():
        response[key] = value
    if status == 401:
        response["WWW-Authenticate"] = CLIENT_CHALLENGE
