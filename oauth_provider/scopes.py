"""Scope backends: where the provider learns which scopes exist and which a client gets by default."""

from __future__ import annotations

from collections.abc import Sequence

from .settings import oauth2_settings


class BaseScopes:
    def get_all_scopes(self) -> dict[str, str]:
        raise NotImplementedError

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        raise NotImplementedError

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        raise NotImplementedError


class SettingsScopes(BaseScopes):
    """Scopes from the ``SCOPES`` and ``DEFAULT_SCOPES`` settings."""

    def get_all_scopes(self) -> dict[str, str]:
        return dict(oauth2_settings.SCOPES)

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        return list(oauth2_settings._SCOPES)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        return list(oauth2_settings._DEFAULT_SCOPES)


def get_scopes_backend() -> BaseScopes:
    return oauth2_settings.SCOPES_BACKEND_CLASS()


def requested_scope_problem(scopes: Sequence[str]) -> str | None:
    """Why a requested scope list is refused whatever scopes exist, or None.

    Longer than ``SCOPE_MAX_LENGTH`` characters (joined by spaces), more than ``SCOPE_MAX_COUNT``
    names, or a name given twice: a request that would otherwise be stored as it came, in the grant
    and in every token issued from it.
    """
    max_length, max_count = oauth2_settings.SCOPE_MAX_LENGTH, oauth2_settings.SCOPE_MAX_COUNT
    if sum(len(name) + 1 for name in scopes) - 1 > max_length:
        return f"scope: at most {max_length} characters"
    if len(scopes) > max_count:
        return f"scope: at most {max_count} scope names"
    seen: set[str] = set()
    for name in scopes:
        if name in seen:
            return f"scope: {name!r} is requested twice"
        seen.add(name)
    return None
