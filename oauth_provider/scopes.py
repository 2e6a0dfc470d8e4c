"""Scope backends: where the provider learns which scopes exist and which a client gets by default."""

from __future__ import annotations

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
