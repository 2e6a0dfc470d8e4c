from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OAuthTasksConfig(AppConfig):
    name = "oauth_tasks"
    label = "oauth_tasks"
    verbose_name = "OAuth maintenance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Built-in jobs register themselves on import; the provider's cleartokens --async reaches
        # the engine through the hook, since the provider never imports this app.
        from oauth_provider.maintenance import set_async_dispatcher

        from . import jobs  # noqa: F401
        from .engine import dispatch
        from .schedule import install_schedule_after_migrate

        set_async_dispatcher(dispatch)
        post_migrate.connect(
            install_schedule_after_migrate, sender=self, dispatch_uid="oauth_tasks_install_schedule"
        )
