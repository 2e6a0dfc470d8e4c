"""Validators of the URIs an application registers, as django-oauth-toolkit's (same names)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.encoding import force_str

__all__ = ["AllowedURIValidator", "URIValidator"]


class URIValidator(URLValidator):
    """Django's URL validator for any scheme, and dotless hosts (``http://localhost``)."""

    scheme_re = r"^(?:[a-z][a-z0-9\.\-\+]*)://"
    dotless_domain_re = r"(?!-)[A-Z\d-]{1,63}(?<!-)"
    host_re = "|".join(
        (r"(?:" + URLValidator.host_re, URLValidator.ipv4_re, URLValidator.ipv6_re, dotless_domain_re + ")")
    )
    port_re = r"(?::\d{2,5})?"
    path_re = r"(?:[/?#][^\s]*)?"
    regex = re.compile(scheme_re + host_re + port_re + path_re, re.IGNORECASE)

    # A private-use URI scheme redirect (RFC 8252 7.1) has no authority: exactly one slash after
    # the scheme ("com.example.app:/oauth2redirect"). "scheme:///path" is refused: it would alias
    # the single-slash form, and redirect URIs match by exact string comparison (RFC 9700 2.1).
    authorityless_regex = re.compile(r"^[a-z][a-z0-9\.\-\+]*:/(?!/)[^\s]*\Z", re.IGNORECASE)

    # Schemes whose specifications require an authority: "https:/example.com" is not a
    # private-use redirect (browsers read it as "https://example.com/").
    schemes_requiring_authority = frozenset({"http", "https", "ws", "wss", "ftp"})


class AllowedURIValidator(URIValidator):
    """A URI of one of ``schemes``, with only the parts allowed; the error names the cause.

    ``name`` names the URI in the message ("redirect uri", "allowed origin"). With
    ``allow_hostname_wildcard`` the host may start with one ``*`` below the second-level domain
    (``https://*.example.com``), as ``ALLOW_URI_WILDCARDS`` matches it.
    """

    def __init__(
        self,
        schemes,
        name: str,
        allow_path: bool = False,
        allow_query: bool = False,
        allow_fragments: bool = False,
        allow_hostname_wildcard: bool = False,
    ) -> None:
        super().__init__(schemes=schemes)
        self.name = name
        self.allow_path = allow_path
        self.allow_query = allow_query
        self.allow_fragments = allow_fragments
        self.allow_hostname_wildcard = allow_hostname_wildcard

    def _error(self, value: str, cause) -> ValidationError:
        return ValidationError(
            "%(name)s URI validation error. %(cause)s: %(value)s",
            params={"name": self.name, "value": value, "cause": cause},
        )

    def __call__(self, value) -> None:
        value = force_str(value)
        try:
            scheme, netloc, path, query, fragment = urlsplit(value)
        except ValueError as error:
            raise self._error(value, error) from error
        if scheme not in self.schemes:
            raise ValidationError(
                "%(name)s URI Validation error. %(cause)s: %(value)s",
                params={"name": self.name, "value": value, "cause": "invalid_scheme"},
            )
        # The raw string, not the parsed parts: "…/cb?" and "…/cb#" carry an (empty) query or
        # fragment that urlsplit() reports as "". Only a "?" ahead of any "#" opens a query.
        if "?" in value.partition("#")[0] and not self.allow_query:
            raise self._error(value, "query string not allowed")
        if "#" in value and not self.allow_fragments:
            raise self._error(value, "fragment not allowed")
        if path and not self.allow_path:
            raise self._error(value, "path not allowed")
        if not netloc:
            if scheme in self.schemes_requiring_authority:
                raise self._error(value, "missing host")
            if not self.authorityless_regex.match(value):
                raise self._error(value, "invalid URI")
            return
        if self.allow_hostname_wildcard and "*" in netloc:
            netloc = self._strip_wildcard(value, netloc)
        # Reassembled without the wildcard, for Django's validator.
        reassembled = f"{scheme}://{netloc}{path}"
        if query:
            reassembled += f"?{query}"
        if fragment:
            reassembled += f"#{fragment}"
        try:
            super().__call__(reassembled)
        except ValidationError as error:
            raise self._error(value, error) from error

    def _strip_wildcard(self, value: str, netloc: str) -> str:
        if netloc.count("*") > 1:
            raise self._error(value, "only one wildcard is allowed in the hostname")
        if not netloc.startswith("*"):
            raise self._error(value, "wildcards must be at the beginning of the hostname")
        if len(netloc.split(".")) < 3:
            raise self._error(value, "wildcards cannot be in the top level or second level domain")
        netloc = netloc[2:] if netloc.startswith("*.") else netloc[1:]
        # A label may not start with a hyphen: up to two after the wildcard are part of it
        # (Netlify's "*--site.netlify.app"); longer runs are left for the validator to refuse.
        if netloc.startswith("--"):
            return netloc[2:]
        if netloc.startswith("-"):
            return netloc[1:]
        return netloc
