"""System checks of the provider's configuration."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

from .settings import NOT_BUILT


@register(Tags.compatibility)
def settings_of_features_not_built(app_configs=None, **kwargs) -> list[Warning]:
    """A django-oauth-toolkit key this provider accepts but whose feature it does not have."""
    user_settings = getattr(settings, "OAUTH2_PROVIDER", None) or {}
    if not isinstance(user_settings, dict):
        return []
    return [
        Warning(
            f"OAUTH2_PROVIDER[{key!r}] is a django-oauth-toolkit setting of a feature this provider "
            "does not have; it is accepted and has no effect.",
            hint="Remove it, or keep it for a project that also runs django-oauth-toolkit.",
            id="oauth_provider.W001",
        )
        for key in sorted(user_settings)
        if key in NOT_BUILT and user_settings[key] != NOT_BUILT[key]
    ]
