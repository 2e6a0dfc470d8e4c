"""Exceptions raised between the oauthlib wrapper and the views."""

from __future__ import annotations

from oauthlib.oauth2 import OAuth2Error


class OAuthToolkitError(Exception):
    """Wraps an oauthlib error; the view decides whether to redirect it back to the client."""

    def __init__(self, error: OAuth2Error | None = None, redirect_uri: str | None = None, *args) -> None:
        super().__init__(*args)
        self.oauthlib_error = error
        if redirect_uri and error is not None:
            self.oauthlib_error.redirect_uri = redirect_uri


class FatalClientError(OAuthToolkitError):
    """An error that must not be redirected (unknown client, bad redirect URI): shown to the user."""


class OIDCError(Exception):
    """Base of the errors of the OpenID Connect endpoints."""

    status_code = 400
    error = "invalid_request"
    description = "The request is invalid."
    # The request parameter the error is about, shown with it.
    parameter = ""

    def __init__(self, description: str | None = None, parameter: str | None = None) -> None:
        if description is not None:
            self.description = description
        if parameter is not None:
            self.parameter = parameter
        super().__init__(f"({self.error}) {self.description}")


class InvalidRequestFatalError(OIDCError):
    """An ``invalid_request`` that is shown to the user, never redirected to the client."""

    error = "invalid_request"


class InvalidIDTokenError(InvalidRequestFatalError):
    description = "The ID Token is expired, revoked, malformed, or otherwise invalid."
    parameter = "id_token_hint"


class InvalidOIDCClientError(InvalidRequestFatalError):
    description = "The client is unknown or no client has been included."
    parameter = "client_id"


class ClientIdMismatch(InvalidRequestFatalError):
    description = "Mismatch between the Client ID of the ID Token and the Client ID that was provided."
    parameter = "client_id"


# django-oauth-toolkit's spelling of the name.
ClientIdMissmatch = ClientIdMismatch


class InvalidOIDCRedirectURIError(InvalidRequestFatalError):
    description = "Invalid post logout redirect URI."
    parameter = "post_logout_redirect_uri"


class LogoutDenied(OIDCError):
    """The user declined the sign-out, or a posted logout request that needs confirmation."""

    error = "logout_denied"
    description = "Logout has been refused by the user."
    parameter = "allow"
