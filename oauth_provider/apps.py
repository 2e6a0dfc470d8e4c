from django.apps import AppConfig


class OAuthProviderConfig(AppConfig):
    name = "oauth_provider"
    label = "oauth_provider"
    verbose_name = "OAuth2 provider"
    default_auto_field = "django.db.models.BigAutoField"
