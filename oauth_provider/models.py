"""The provider's models: applications (clients), grants, access, refresh and ID tokens.

Each model has an abstract base and a concrete, swappable class, with the fields and relations of
django-oauth-toolkit 3.x. On top of those, the indexes that a cleanup by expiry and a revocation by
user or application need, so that neither scans a table. PostgreSQL also gets three indexes no model
declares: access tokens' and ID tokens' keys carrying ``expires`` (migrations 0006 and 0007), and
the keys of the orphaned refresh tokens rule 2 deletes (0008).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from contextlib import suppress
from datetime import timedelta
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models, router, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _
from jwcrypto import jwk
from jwcrypto.common import base64url_encode

from .client_secrets import verified_secrets
from .crypto import jwk_from_pem
from .generators import generate_client_id, generate_client_secret
from .scopes import get_scopes_backend
from .settings import oauth2_settings
from .validators import AllowedURIValidator

logger = logging.getLogger(__name__)


def is_hashed_secret(value: str) -> bool:
    """True when ``value`` is in the format of one of Django's password hashers."""
    if not value:
        return False
    try:
        identify_hasher(value)
    except ValueError:
        return False
    return True


def token_checksum(raw_token: str) -> str:
    """The indexed lookup key of a token: its SHA-256, so lookups never compare long text columns."""
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


class ClientSecretField(models.CharField):
    """Hashes the secret with Django's password hashers on save, unless the row opts out."""

    def pre_save(self, model_instance, add):
        secret = getattr(model_instance, self.attname)
        if getattr(model_instance, "hash_client_secret", True) and secret and not is_hashed_secret(secret):
            secret = make_password(secret, hasher=oauth2_settings.CLIENT_SECRET_HASHER)
            setattr(model_instance, self.attname, secret)
        return super().pre_save(model_instance, add)


class TokenChecksumField(models.CharField):
    """Derived from the ``token`` column on every save."""

    def pre_save(self, model_instance, add):
        token = getattr(model_instance, "token", "")
        if token:
            setattr(model_instance, self.attname, token_checksum(token))
        return super().pre_save(model_instance, add)


class ExactCharField(models.CharField):
    """A CharField whose equality is byte for byte on every backend, for credentials and identifiers.

    PostgreSQL and SQLite compare text exactly. MySQL and MariaDB compare it with the column's
    collation, which is case-insensitive by default (``utf8mb4_general_ci``, ``uca1400_ai_ci``):
    there ``code = 'ABC'`` finds the code ``abc``, and a unique index refuses ``ABC`` next to
    ``abc``. On those backends the column is created with the binary collation ``utf8mb4_bin``
    instead, so lookups, joins and the unique index all compare exactly. Other backends are left
    as they are (``db_collation`` would name that collation everywhere, where it does not exist).
    """

    #: The collation of the column on MySQL and MariaDB (the database must use ``utf8mb4``).
    mysql_collation = "utf8mb4_bin"

    def db_parameters(self, connection):
        params = super().db_parameters(connection)
        if connection.vendor == "mysql" and not params.get("collation"):
            params["collation"] = self.mysql_collation
        return params


LOOPBACK_IPS = ("127.0.0.1", "::1")


# A requested URI is client input and a registered one may be long too: what a mismatch log line
# shows of either is escaped (no forged lines) and cut, and at most this many candidates are listed.
_MAX_LOGGED_URI_LENGTH = 256
_MAX_LOGGED_CANDIDATES = 10


def _loggable_uri(uri: str | None) -> str:
    """A URI for a log line: ``repr()`` (CR and LF escaped), truncated past 256 characters."""
    if uri is None:
        return "None"
    if len(uri) > _MAX_LOGGED_URI_LENGTH:
        uri = uri[:_MAX_LOGGED_URI_LENGTH] + "...[truncated]"
    return repr(uri)


def _format_uri_mismatch_reasons(reasons: list[tuple[str | None, str]]) -> str:
    """The ``(candidate, reason)`` pairs of :func:`check_redirect_to_uri_allowed` as one string."""
    if not reasons:
        return "no URIs are registered"
    listed = "; ".join(
        reason if candidate is None else f"{_loggable_uri(candidate)}: {reason}"
        for candidate, reason in reasons[:_MAX_LOGGED_CANDIDATES]
    )
    remaining = len(reasons) - _MAX_LOGGED_CANDIDATES
    if remaining > 0:
        listed += f"; ...and {remaining} further registered URI(s) not listed"
    return listed


def _log_registered_uri_mismatch(
    uri_type: str, uri: str, client_id: str, reasons: list[tuple[str | None, str]]
) -> None:
    """Say at DEBUG why a requested URI matched none registered for the client.

    Only in the log: the error response goes to whoever sent the request, who must not learn a
    client's registered URIs by trying junk ones. Nothing is formatted unless DEBUG is enabled.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    logger.debug(
        "%s %s does not match any %s registered for client_id %r: %s",
        uri_type,
        _loggable_uri(uri),
        uri_type,
        client_id,
        _format_uri_mismatch_reasons(reasons),
    )


def _redirect_uri_mismatch(uri: str, registered: str) -> str | None:
    """Why one registered URI does not match a requested one, component by component, or None.

    Exact, except that a loopback IP redirect URI (``http://127.0.0.1`` or ``http://[::1]``, and
    ``http://localhost`` with ``ALLOW_LOCALHOST_LOOPBACK``) matches on any port (RFC 8252 7.3:
    native apps listen on an ephemeral port), and with ``ALLOW_URI_WILDCARDS`` a registered host
    ``*.example.com`` matches its subdomains.
    """
    if "#" in registered:
        return "the registered URI has a fragment and can never match"
    want, got = urlsplit(registered), urlsplit(uri)
    if "@" in want.netloc:
        return "the registered URI carries userinfo credentials and can never match"
    if want.scheme != got.scheme:
        return "scheme differs"
    want_host, got_host = want.hostname, got.hostname
    if oauth2_settings.ALLOW_URI_WILDCARDS and want_host and want_host.startswith("*"):
        if not got_host or not got_host.endswith(want_host[1:]):
            return "hostname does not match the registered wildcard"
    elif want_host != got_host:
        return "hostname differs"
    loopback = want.scheme == "http" and (
        want_host in LOOPBACK_IPS or (oauth2_settings.ALLOW_LOCALHOST_LOOPBACK and want_host == "localhost")
    )
    if not loopback and want.port != got.port:
        return "port differs"
    # The rest exactly (RFC 9700 2.1), an empty query ("?") included.
    if want.path != got.path:
        return "path differs"
    if ("?" in registered) != ("?" in uri):
        return "one URI has a query component and the other does not"
    if want.query != got.query:
        return "query string differs"
    return None


def check_redirect_to_uri_allowed(
    uri: str, allowed_uris: list[str]
) -> tuple[bool, list[tuple[str | None, str]]]:
    """:func:`redirect_to_uri_allowed`, with why not: ``(allowed, reasons)`` (DOT's function).

    ``reasons`` holds a ``(registered URI, reason)`` pair for each registered URI that did not
    match, or one ``(None, reason)`` when the requested URI itself can never be accepted (a
    fragment, RFC 6749 3.1.2; credentials in its authority). A reason names the component that
    differs and never repeats the requested URI.
    """
    if not isinstance(allowed_uris, list):
        raise ValueError("allowed_uris must be a list")
    if "#" in uri:
        return False, [(None, "the requested URI has a fragment, which RFC 6749 section 3.1.2 forbids")]
    if "@" in urlsplit(uri).netloc:
        return False, [(None, "the requested URI carries userinfo credentials in its authority")]
    reasons: list[tuple[str | None, str]] = []
    for registered in allowed_uris:
        reason = _redirect_uri_mismatch(uri, registered)
        if reason is None:
            return True, []
        reasons.append((registered, reason))
    return False, reasons


def redirect_to_uri_allowed(uri: str, allowed_uris: list[str]) -> bool:
    """Whether ``uri`` may be redirected to, given the registered ``allowed_uris`` (DOT's function).

    A requested URI with a fragment or with credentials in its authority never is.
    """
    allowed, _reasons = check_redirect_to_uri_allowed(uri, allowed_uris)
    return allowed


def is_origin_allowed(origin: str, allowed_origins: list[str]) -> bool:
    """Whether a CORS ``origin`` is one of ``allowed_origins`` (scheme and host:port), and its scheme is
    in ``ALLOWED_SCHEMES`` (``https`` only by default), as django-oauth-toolkit's function."""
    parsed = urlsplit(origin)
    if parsed.scheme not in oauth2_settings.ALLOWED_SCHEMES:
        return False
    return any(
        (allowed.scheme, allowed.netloc) == (parsed.scheme, parsed.netloc)
        for allowed in map(urlsplit, allowed_origins)
    )


def redirect_uri_scheme_errors(uris: list[str], allowed_schemes: list[str]) -> list[str]:
    """One message per URI that is malformed or whose scheme is not allowed."""
    allowed = {s.lower() for s in allowed_schemes}
    errors = []
    for uri in uris:
        parts = urlsplit(uri)
        if not parts.scheme:
            errors.append(f"{uri!r} is not an absolute URI")
        elif parts.scheme.lower() not in allowed:
            errors.append(
                f"scheme {parts.scheme!r} of {uri!r} is not allowed (allowed: {', '.join(sorted(allowed))})"
            )
        elif parts.fragment:
            errors.append(f"{uri!r} must not contain a fragment")
        elif parts.scheme.lower() in ("http", "https") and not parts.netloc:
            errors.append(f"{uri!r} has no host")
    return errors


class AbstractApplication(models.Model):
    """A client registered with the provider (RFC 6749 section 2)."""

    CLIENT_CONFIDENTIAL = "confidential"
    CLIENT_PUBLIC = "public"
    CLIENT_TYPES = (
        (CLIENT_CONFIDENTIAL, _("Confidential")),
        (CLIENT_PUBLIC, _("Public")),
    )

    GRANT_AUTHORIZATION_CODE = "authorization-code"
    GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
    GRANT_IMPLICIT = "implicit"
    GRANT_PASSWORD = "password"
    GRANT_CLIENT_CREDENTIALS = "client-credentials"
    GRANT_OPENID_HYBRID = "openid-hybrid"
    GRANT_TYPES = (
        (GRANT_AUTHORIZATION_CODE, _("Authorization code")),
        (GRANT_DEVICE_CODE, _("Device code")),
        (GRANT_IMPLICIT, _("Implicit")),
        (GRANT_PASSWORD, _("Resource owner password-based")),
        (GRANT_CLIENT_CREDENTIALS, _("Client credentials")),
        (GRANT_OPENID_HYBRID, _("OpenID connect hybrid")),
    )

    NO_ALGORITHM = ""
    RS256_ALGORITHM = "RS256"
    HS256_ALGORITHM = "HS256"
    ALGORITHM_TYPES = (
        (NO_ALGORITHM, _("No OIDC support")),
        (RS256_ALGORITHM, _("RSA with SHA-2 256")),
        (HS256_ALGORITHM, _("HMAC with SHA-2 256")),
    )

    id = models.BigAutoField(primary_key=True)
    client_id = ExactCharField(max_length=100, unique=True, default=generate_client_id, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        related_name="%(app_label)s_%(class)s",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
    )
    redirect_uris = models.TextField(blank=True, help_text=_("Allowed URIs list, space separated"))
    post_logout_redirect_uris = models.TextField(
        blank=True, default="", help_text=_("Allowed post logout URIs list, space separated")
    )
    client_type = models.CharField(max_length=32, choices=CLIENT_TYPES)
    authorization_grant_type = models.CharField(max_length=44, choices=GRANT_TYPES)
    client_secret = ClientSecretField(
        max_length=255,
        blank=True,
        default=generate_client_secret,
        db_index=True,
        help_text=_("Hashed on save. Copy it now if you need it: it cannot be read back."),
    )
    hash_client_secret = models.BooleanField(default=True)
    name = models.CharField(max_length=255, blank=True)
    skip_authorization = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    algorithm = models.CharField(max_length=5, choices=ALGORITHM_TYPES, default=NO_ALGORITHM, blank=True)
    allowed_origins = models.TextField(
        blank=True, default="", help_text=_("Allowed origins list to enable CORS, space separated")
    )

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name or self.client_id

    @property
    def default_redirect_uri(self) -> str | None:
        uris = self.redirect_uris.split()
        return uris[0] if len(uris) == 1 else None

    def redirect_uri_allowed(self, uri: str) -> bool:
        """Match against a registered URI (RFC 6749 3.1.2.3): exact, but for loopback ports and
        wildcards as :func:`redirect_to_uri_allowed` allows. Why not is logged at DEBUG."""
        allowed, reasons = check_redirect_to_uri_allowed(uri, self.redirect_uris.split())
        if not allowed:
            _log_registered_uri_mismatch("redirect_uri", uri, self.client_id, reasons)
        return allowed

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        """As :meth:`redirect_uri_allowed`, against ``post_logout_redirect_uris``."""
        allowed, reasons = check_redirect_to_uri_allowed(uri, self.post_logout_redirect_uris.split())
        if not allowed:
            _log_registered_uri_mismatch("post_logout_redirect_uri", uri, self.client_id, reasons)
        return allowed

    def origin_allowed(self, origin: str) -> bool:
        """A CORS origin listed in ``allowed_origins``, with a scheme of ``ALLOWED_SCHEMES``."""
        return bool(self.allowed_origins) and is_origin_allowed(origin, self.allowed_origins.split())

    def get_allowed_schemes(self) -> list[str]:
        return list(oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES)

    def allows_grant_type(self, *grant_types: str) -> bool:
        """Override in a subclass to let one application use several grants."""
        return self.authorization_grant_type in grant_types

    def is_usable(self, request) -> bool:
        return True

    def clean(self) -> None:
        """Validate the application, every problem on the field it belongs to, all at once.

        As django-oauth-toolkit: redirect URIs by ``AllowedURIValidator`` (schemes of
        ``get_allowed_schemes()``, wildcard hosts with ``ALLOW_URI_WILDCARDS``), CORS origins by
        ``ALLOWED_SCHEMES``, and the signing algorithm against the key it needs.
        """
        field_errors: dict[str, list] = defaultdict(list)
        uris = self.redirect_uris.split()
        schemes = {s.lower() for s in self.get_allowed_schemes()}
        if uris:
            validator = AllowedURIValidator(
                schemes,
                name="redirect uri",
                allow_path=True,
                allow_query=True,
                allow_hostname_wildcard=oauth2_settings.ALLOW_URI_WILDCARDS,
            )
            for uri in uris:
                try:
                    validator(uri)
                except ValidationError as error:
                    field_errors["redirect_uris"].extend(error.error_list)
        elif self.authorization_grant_type in (
            self.GRANT_AUTHORIZATION_CODE,
            self.GRANT_IMPLICIT,
            self.GRANT_OPENID_HYBRID,
        ):
            field_errors["redirect_uris"].append(
                _("redirect_uris cannot be empty with grant_type {grant_type}").format(
                    grant_type=self.authorization_grant_type
                )
            )
        post = self.post_logout_redirect_uris.split()
        if post:
            field_errors["post_logout_redirect_uris"].extend(redirect_uri_scheme_errors(post, list(schemes)))
        origins = self.allowed_origins.split()
        if origins:
            validator = AllowedURIValidator(
                oauth2_settings.ALLOWED_SCHEMES,
                "allowed origin",
                allow_hostname_wildcard=oauth2_settings.ALLOW_URI_WILDCARDS,
            )
            for origin in origins:
                try:
                    validator(origin)
                except ValidationError as error:
                    field_errors["allowed_origins"].extend(error.error_list)
        if self.algorithm == self.RS256_ALGORITHM and not oauth2_settings.OIDC_RSA_PRIVATE_KEY:
            field_errors["algorithm"].append(_("You must set OIDC_RSA_PRIVATE_KEY to use RSA algorithm"))
        if self.algorithm == self.HS256_ALGORITHM:
            if self.client_type == self.CLIENT_PUBLIC or self.authorization_grant_type in (
                self.GRANT_IMPLICIT,
                self.GRANT_OPENID_HYBRID,
            ):
                field_errors["algorithm"].append(_("You cannot use HS256 with public grants or clients"))
            if not self.client_secret:
                field_errors["client_secret"].append(
                    _("You cannot use HS256 without a client secret; it is the HMAC signing key.")
                )
            elif self.hash_client_secret or is_hashed_secret(self.client_secret):
                # On the field that has to change: the flag while set, else the stored secret.
                field_errors["hash_client_secret" if self.hash_client_secret else "client_secret"].append(
                    _(
                        "You cannot use HS256 with a hashed client secret. For HS256 the client "
                        "secret is the shared signing key and must be stored unhashed so the relying "
                        "party can verify the token; set hash_client_secret=False and store an "
                        "unhashed client_secret on this application."
                    )
                )
        errors = {field: messages for field, messages in field_errors.items() if messages}
        if errors:
            raise ValidationError(errors)

    def check_client_secret(self, raw_secret: str | None) -> bool:
        """Compare a presented secret with the stored one in constant time, hashed or not."""
        if not raw_secret or not self.client_secret:
            return False
        if is_hashed_secret(self.client_secret):
            # A secret this process verified recently is not hashed again (see client_secrets).
            stored = self.client_secret
            return verified_secrets.check(
                self.client_id, raw_secret, stored, lambda: check_password(raw_secret, stored)
            )
        return constant_time_compare(raw_secret, self.client_secret)

    @property
    def jwk_key(self) -> jwk.JWK:
        if self.algorithm == self.RS256_ALGORITHM:
            if not oauth2_settings.OIDC_RSA_PRIVATE_KEY:
                raise ImproperlyConfigured("You must set OIDC_RSA_PRIVATE_KEY to use RSA algorithm")
            return jwk_from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY)
        if self.algorithm == self.HS256_ALGORITHM:
            if not self.client_secret or is_hashed_secret(self.client_secret):
                raise ImproperlyConfigured("HS256 needs the plaintext client secret as its key")
            return jwk.JWK(kty="oct", k=base64url_encode(self.client_secret))
        raise ImproperlyConfigured("This application does not support signed tokens")


class ApplicationManager(models.Manager):
    def get_by_natural_key(self, client_id: str):
        return self.get(client_id=client_id)


class Application(AbstractApplication):
    objects = ApplicationManager()

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"

    def natural_key(self) -> tuple[str]:
        return (self.client_id,)


class AbstractGrant(models.Model):
    """An authorization code, swapped for tokens at the token endpoint (RFC 6749 4.1.2)."""

    CODE_CHALLENGE_PLAIN = "plain"
    CODE_CHALLENGE_S256 = "S256"
    CODE_CHALLENGE_METHODS = ((CODE_CHALLENGE_PLAIN, "plain"), (CODE_CHALLENGE_S256, "S256"))

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="%(app_label)s_%(class)s"
    )
    code = ExactCharField(max_length=255, unique=True)
    application = models.ForeignKey(oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE)
    expires = models.DateTimeField()
    redirect_uri = models.TextField()
    scope = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    code_challenge = models.CharField(max_length=128, blank=True, default="")
    code_challenge_method = models.CharField(
        max_length=10, blank=True, default="", choices=CODE_CHALLENGE_METHODS
    )
    nonce = models.CharField(max_length=255, blank=True, default="")
    claims = models.TextField(blank=True)
    # A code swapped for tokens is kept until it expires, marked, so that a replay is recognised and
    # the tokens of its first exchange revoked (RFC 6749 4.1.2).
    consumed = models.DateTimeField(null=True, blank=True)
    token_family = models.UUIDField(null=True, blank=True)
    # When the user last authenticated, for the ID token's auth_time (OpenID Connect Core 2).
    auth_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        indexes = [models.Index(fields=["expires"], name="%(class)s_exp")]

    def __str__(self) -> str:
        return f"Grant #{self.pk}"

    def is_expired(self) -> bool:
        return not self.expires or timezone.now() >= self.expires

    def redirect_uri_allowed(self, uri: str) -> bool:
        """The very URI of the authorization request (RFC 6749 4.1.3); a mismatch is logged at
        DEBUG, without the code."""
        allowed = uri == self.redirect_uri
        if not allowed and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "redirect_uri %s does not match the redirect_uri %s recorded on grant #%s at "
                "authorization time; RFC 6749 section 4.1.3 requires them to be identical",
                _loggable_uri(uri),
                _loggable_uri(self.redirect_uri),
                self.pk,
            )
        return allowed


class Grant(AbstractGrant):
    class Meta(AbstractGrant.Meta):
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class ScopedTokenMixin:
    def is_expired(self) -> bool:
        return not self.expires or timezone.now() >= self.expires

    def allow_scopes(self, scopes) -> bool:
        if not scopes:
            return True
        return set(scopes).issubset(set(self.scope.split()))

    def is_valid(self, scopes=None) -> bool:
        return not self.is_expired() and self.allow_scopes(scopes)

    @property
    def scopes(self) -> dict[str, str]:
        all_scopes = get_scopes_backend().get_all_scopes()
        names = self.scope.split()
        return {name: desc for name, desc in all_scopes.items() if name in names}


class AbstractAccessToken(ScopedTokenMixin, models.Model):
    """A bearer access token (RFC 6749 section 5)."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        blank=True,
        null=True,
        related_name="%(app_label)s_%(class)s",
    )
    source_refresh_token = models.OneToOneField(
        oauth2_settings.REFRESH_TOKEN_MODEL,
        on_delete=models.SET_NULL,
        blank=True,
        null=True,
        related_name="refreshed_access_token",
    )
    token = models.TextField()
    token_checksum = TokenChecksumField(max_length=64, unique=True, db_index=True)
    id_token = models.OneToOneField(
        oauth2_settings.ID_TOKEN_MODEL,
        on_delete=models.CASCADE,
        blank=True,
        null=True,
        related_name="access_token",
    )
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, blank=True, null=True
    )
    expires = models.DateTimeField()
    scope = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        indexes = [
            # Cleanup walks expired rows; revocation walks a user's or an application's rows.
            models.Index(fields=["expires"], name="%(class)s_exp"),
            models.Index(fields=["user", "application"], name="%(class)s_usr_app"),
        ]

    def __str__(self) -> str:
        return f"AccessToken #{self.pk}"

    @classmethod
    def lookup(cls, raw_token: str):
        """The token with this value, by its indexed checksum, or None."""
        # The checksum is unique: ``[:1]`` rather than ``first()``, whose ORDER BY costs compiling.
        found = cls.objects.select_related("application", "user").filter(
            token_checksum=token_checksum(raw_token)
        )
        return next(iter(found[:1]), None)

    def revoke(self) -> None:
        """Revoking an access token deletes it (its refresh token keeps a NULL link)."""
        self.delete()


class AccessToken(AbstractAccessToken):
    class Meta(AbstractAccessToken.Meta):
        swappable = "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL"


class AbstractRefreshToken(models.Model):
    """A refresh token; revoking marks it (``revoked``) and deletes its access token."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="%(app_label)s_%(class)s"
    )
    token = models.TextField()
    token_checksum = TokenChecksumField(max_length=64)
    application = models.ForeignKey(oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE)
    access_token = models.OneToOneField(
        oauth2_settings.ACCESS_TOKEN_MODEL,
        on_delete=models.SET_NULL,
        blank=True,
        null=True,
        related_name="refresh_token",
    )
    token_family = models.UUIDField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    revoked = models.DateTimeField(null=True)

    class Meta:
        abstract = True
        unique_together = ("token_checksum", "revoked")
        indexes = [
            models.Index(fields=["token_family"], name="%(class)s_family"),
            models.Index(fields=["revoked"], name="%(class)s_revoked"),
            models.Index(fields=["user", "application"], name="%(class)s_usr_app"),
        ]

    def __str__(self) -> str:
        return f"RefreshToken #{self.pk}"

    @classmethod
    def lookup(cls, raw_token: str):
        return cls.objects.filter(token_checksum=token_checksum(raw_token)).order_by("-id").first()

    def revoke(self) -> None:
        """Mark this refresh token revoked and delete its access token, once."""
        access_token_model = get_access_token_model()
        refresh_token_model = get_refresh_token_model()
        with transaction.atomic(using=router.db_for_write(access_token_model)):
            locked = list(
                refresh_token_model.objects.select_for_update().filter(pk=self.pk, revoked__isnull=True)
            )
            if not locked:
                return
            token = locked[0]
            with suppress(access_token_model.DoesNotExist):
                access_token_model.objects.get(pk=token.access_token_id).revoke()
            token.access_token = None
            token.revoked = timezone.now()
            token.save(update_fields=["access_token", "revoked", "updated"])
            self.access_token = None
            self.revoked = token.revoked

    @classmethod
    def revoke_family(cls, token_family: uuid.UUID | None) -> None:
        """Revoke every live token of a family and delete its access tokens (reuse detection)."""
        if not token_family:
            return
        access_token_model = get_access_token_model()
        with transaction.atomic(using=router.db_for_write(access_token_model)):
            now = timezone.now()
            access_ids = list(
                cls.objects.filter(token_family=token_family, access_token__isnull=False).values_list(
                    "access_token_id", flat=True
                )
            )
            cls.objects.filter(token_family=token_family, revoked__isnull=True).update(
                revoked=now, updated=now, access_token=None
            )
            access_token_model.objects.filter(pk__in=access_ids).delete()


class RefreshToken(AbstractRefreshToken):
    class Meta(AbstractRefreshToken.Meta):
        swappable = "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL"


class AbstractIDToken(ScopedTokenMixin, models.Model):
    """An OpenID Connect ID token, kept so its ``jti`` can be checked and the token expired."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        blank=True,
        null=True,
        related_name="%(app_label)s_%(class)s",
    )
    jti = models.UUIDField(unique=True, default=uuid.uuid4, editable=False, verbose_name=_("JWT Token ID"))
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, blank=True, null=True
    )
    expires = models.DateTimeField()
    scope = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        indexes = [models.Index(fields=["expires"], name="%(class)s_exp")]

    def __str__(self) -> str:
        return f"JTI: {self.jti} User: {self.user_id}"

    def revoke(self) -> None:
        self.delete()


class IDToken(AbstractIDToken):
    class Meta(AbstractIDToken.Meta):
        swappable = "OAUTH2_PROVIDER_ID_TOKEN_MODEL"


def watermark_target_key(application_id: int | None, user_id: int | None, scope: str) -> str:
    """The unique key of a revocation target: a SHA-256 of its application, user and scope.

    A digest, not the names themselves: it is unique on every backend with a plain unique
    constraint, and compares the same under any collation (a scope ``Read`` is not ``read``, even
    where MariaDB's default collation would say it is).
    """
    text = f"application={application_id or ''};user={user_id or ''};scope={scope or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RevocationWatermark(models.Model):
    """ "Not valid before" for one revocation target: tokens issued earlier are refused at once.

    A bulk revocation writes this one row first, so the revocation takes effect immediately, and
    the background job removes the token rows afterwards. The target is an application, a user, a
    user within one application, or a scope; each target has at most one row (``target_key`` is
    unique), whose ``not_before`` only moves forward.
    """

    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, null=True, blank=True
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="oauth_revocation_watermarks",
    )
    scope = models.CharField(max_length=255, blank=True, default="")
    target_key = models.CharField(
        max_length=64,
        editable=False,
        help_text="SHA-256 of application, user and scope, set on save: one row per target.",
    )
    not_before = models.DateTimeField()
    reason = models.CharField(max_length=255, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A plain unique constraint on a derived key instead of conditional ones per target
            # kind: MariaDB and MySQL create no conditional unique constraint.
            models.UniqueConstraint(fields=["target_key"], name="watermark_one_row_per_target"),
            models.CheckConstraint(
                condition=(
                    (models.Q(application__isnull=False) | models.Q(user__isnull=False)) & models.Q(scope="")
                )
                | (models.Q(application__isnull=True, user__isnull=True) & ~models.Q(scope="")),
                name="watermark_one_target",
            ),
        ]

    def save(self, *args, **kwargs) -> None:
        self.target_key = watermark_target_key(self.application_id, self.user_id, self.scope)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "target_key" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "target_key"]
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        parts = []
        if self.application_id:
            parts.append(f"application {self.application_id}")
        if self.user_id:
            parts.append(f"user {self.user_id}")
        if self.scope:
            parts.append(f"scope {self.scope}")
        return f"Tokens of {' and '.join(parts)} issued before {self.not_before.isoformat()}"


def get_application_model():
    return apps.get_model(oauth2_settings.APPLICATION_MODEL)


def get_grant_model():
    return apps.get_model(oauth2_settings.GRANT_MODEL)


def get_access_token_model():
    return apps.get_model(oauth2_settings.ACCESS_TOKEN_MODEL)


def get_refresh_token_model():
    return apps.get_model(oauth2_settings.REFRESH_TOKEN_MODEL)


def get_id_token_model():
    return apps.get_model(oauth2_settings.ID_TOKEN_MODEL)


def refresh_token_expire_timedelta() -> timedelta | None:
    """``REFRESH_TOKEN_EXPIRE_SECONDS`` as a timedelta; None when refresh tokens never expire by age.

    As in django-oauth-toolkit, unset, ``0`` and ``timedelta(0)`` all mean "never". A negative,
    non-numeric or out-of-range value (10**20) is ``ImproperlyConfigured`` naming the setting,
    the same error cleanup raises for it.
    """
    from .cleanup import _seconds_setting

    return _seconds_setting("REFRESH_TOKEN_EXPIRE_SECONDS")


def clear_expired(**kwargs):
    """django-oauth-toolkit's ``oauth2_provider.models.clear_expired``: see ``oauth_provider.cleanup``.

    Imported lazily because the cleanup module imports the model getters of this module.
    """
    from .cleanup import clear_expired as _clear_expired

    return _clear_expired(**kwargs)
