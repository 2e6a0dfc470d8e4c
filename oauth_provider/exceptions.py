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

    def __init__(self, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(f"({self.error}) {self.description}")


class InvalidIDTokenError(OIDCError):
    description = "The ID Token is expired, revoked, malformed, or otherwise invalid."


class InvalidOIDCClientError(OIDCError):
    description = "The client is unknown or no client has been included."


class ClientIdMismatch(OIDCError):
    description = "Mismatch between the Client ID of the ID Token and the Client ID that was provided."


class InvalidOIDCRedirectURIError(OIDCError):
    description = "Invalid post logout redirect URI."
