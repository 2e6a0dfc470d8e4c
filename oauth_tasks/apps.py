from django.apps import AppConfig


class OAuthTasksConfig(AppConfig):
    name = "oauth_tasks"
    label = "oauth_tasks"
    verbose_name = "OAuth maintenance"
    default_auto_field = "django.db.models.BigAutoField"
