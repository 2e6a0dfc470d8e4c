"""OpenID Connect RP-Initiated Logout 1.0: the end session endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauthlib.common import add_params_to_uri

from ..http import OAuth2ResponseRedirect, csrf_failure_response, oidc_issuer
from ..id_tokens import load_id_token
from ..models import get_application_model
from ..revocation import RevocationTarget, revoke_from_request
from ..settings import oauth2_settings

PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


class LogoutError(Exception):
    """A logout request refused with 400; ``parameter`` names the offending request parameter."""

    def __init__(self, error: str, parameter: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.parameter = parameter
        self.description = description


@dataclass
class LogoutRequest:
    """A validated logout request: the requesting application and the user of the ID token hint."""

    params: dict[str, str]
    application: object | None
    token_user: object | None
    redirect_uri: str | None
    redirect_schemes: list[str]


def load_id_token_hint(raw: str, request: HttpRequest):
    """The stored ID token of a JWT this provider signed for one of its applications, or None.

    The signature, the issuer and (unless ``OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS``) the
    expiry are checked; the ``jti`` must name an ID token the provider still holds for the
    application whose key verified the signature (``id_tokens.load_id_token``).
    """
    return load_id_token(
        raw,
        issuer=oidc_issuer(request),
        accept_expired=oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS,
    )


@method_decorator(never_cache, name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RPInitiatedLogoutView(View):
    """The end session endpoint (OpenID Connect RP-Initiated Logout 1.0), GET and POST.

    A relying party may send the logout request by GET or POST (section 2), so the view is CSRF
    exempt; the confirmation form it renders carries a CSRF token, checked when it is submitted.
    """

    template_name = "oauth2_provider/logout_confirm.html"

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not (oauth2_settings.OIDC_ENABLED and oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ENABLED):
            raise Http404("RP-initiated logout is not enabled")
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self.handle(request, request.GET, confirmed=False)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if "confirm" not in request.POST:
            # A logout request posted by the relying party: handled as a GET.
            return self.handle(request, request.POST, confirmed=False)
        refused = csrf_failure_response(request)
        if refused is not None:
            return refused
        if "allow" not in request.POST:
            return render(request, self.template_name, {"cancelled": True})
        return self.handle(request, request.POST, confirmed=True)

    def handle(self, request: HttpRequest, data, confirmed: bool) -> HttpResponse:
        try:
            logout_request = self.validate(request, {key: data.get(key, "") for key in PARAMETERS})
        except LogoutError as error:
            return self.error_response(request, error)
        if confirmed or not self.must_prompt(request, logout_request.token_user):
            return self.do_logout(request, logout_request)
        context = {
            "application": logout_request.application,
            "params": {key: value for key, value in logout_request.params.items() if value},
        }
        return render(request, self.template_name, context)

    def validate(self, request: HttpRequest, params: dict[str, str]) -> LogoutRequest:
        id_token = None
        if params["id_token_hint"]:
            id_token = load_id_token_hint(params["id_token_hint"], request)
            if id_token is None:
                raise LogoutError(
                    "invalid_request",
                    "id_token_hint",
                    "The id_token_hint is not a valid ID token issued by this provider.",
                )
        application = id_token.application if id_token else None
        if params["client_id"]:
            if application is not None and application.client_id != params["client_id"]:
                raise LogoutError(
                    "invalid_request",
                    "client_id",
                    "The client_id does not match the audience of the id_token_hint.",
                )
            if application is None:
                application = get_application_model().objects.filter(client_id=params["client_id"]).first()
                if application is None:
                    raise LogoutError("invalid_client", "client_id", "The client_id is unknown.")
        redirect_uri = params["post_logout_redirect_uri"] or None
        schemes = list(oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES)
        if redirect_uri:
            schemes = self.validate_redirect_uri(redirect_uri, application)
        return LogoutRequest(
            params=params,
            application=application,
            token_user=id_token.user if id_token else None,
            redirect_uri=redirect_uri,
            redirect_schemes=schemes,
        )

    def validate_redirect_uri(self, uri: str, application) -> list[str]:
        """The allowed schemes of the application the URI is registered on; LogoutError otherwise."""
        strict = oauth2_settings.OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS
        if application is None:
            if strict:
                raise LogoutError(
                    "invalid_request",
                    "post_logout_redirect_uri",
                    "A post_logout_redirect_uri requires an id_token_hint or a client_id.",
                )
            # Without a client, the URI must be registered on some application.
            candidates = get_application_model().objects.filter(post_logout_redirect_uris__contains=uri)
            application = next((app for app in candidates if app.post_logout_redirect_uri_allowed(uri)), None)
        if application is None or not application.post_logout_redirect_uri_allowed(uri):
            raise LogoutError(
                "invalid_request",
                "post_logout_redirect_uri",
                f"The post_logout_redirect_uri {uri!r} is not registered for this client.",
            )
        scheme = urlsplit(uri).scheme.lower()
        if scheme not in {allowed.lower() for allowed in application.get_allowed_schemes()}:
            raise LogoutError(
                "invalid_request",
                "post_logout_redirect_uri",
                f"The post_logout_redirect_uri scheme {scheme!r} is not permitted.",
            )
        if strict and scheme == "http" and application.client_type != application.CLIENT_CONFIDENTIAL:
            raise LogoutError(
                "invalid_request",
                "post_logout_redirect_uri",
                "An http post_logout_redirect_uri is only allowed for confidential clients.",
            )
        return application.get_allowed_schemes()

    def must_prompt(self, request: HttpRequest, token_user) -> bool:
        """Ask the user unless the hint's user is the one signed in and prompting is not forced.

        Without a session the visitor is always asked, as django-oauth-toolkit does: a link
        opened from another site with an ID token hint (which may be old and replayed) must not
        revoke anybody's tokens by itself.
        """
        if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT or not request.user.is_authenticated:
            return True
        return token_user is None or token_user.pk != request.user.pk

    def do_logout(self, request: HttpRequest, logout_request: LogoutRequest) -> HttpResponse:
        application = logout_request.application
        user = logout_request.token_user
        if user is None and request.user.is_authenticated:
            user = request.user
        if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS and user is not None and application:
            # Refused from now on; the rows go through a run of the maintenance worker.
            revoke_from_request(
                RevocationTarget(user_id=user.pk, application_id=application.pk),
                trigger="logout",
                triggered_by=f"{user.get_username()} (logout from client {application.client_id})",
                reason="RP-initiated logout",
            )
        logout(request)
        if logout_request.redirect_uri:
            uri = logout_request.redirect_uri
            state = logout_request.params.get("state")
            if state:
                uri = add_params_to_uri(uri, [("state", state)])
            return OAuth2ResponseRedirect(uri, logout_request.redirect_schemes)
        return HttpResponseRedirect(resolve_url(settings.LOGOUT_REDIRECT_URL or "/"))

    def error_response(self, request: HttpRequest, error: LogoutError) -> HttpResponse:
        body = {
            "error": error.error,
            "error_description": error.description,
            "parameter": error.parameter,
        }
        accept = request.headers.get("Accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return JsonResponse(body, status=400)
        return render(request, self.template_name, {"error": body}, status=400)
