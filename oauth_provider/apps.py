from django.apps import AppConfig


class OAuthProviderConfig(AppConfig):
    name = "oauth_provider"
    label = "oauth_provider"
    verbose_name = "OAuth2 provider"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connect the sign-in time receiver and register the system checks.
        from . import authentication, checks  # noqa: F401
        from .watermark_cache import connect_signals

        # Every write of a revocation watermark sets a new generation on commit.
        connect_signals()
