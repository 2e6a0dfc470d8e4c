"""A project that swaps the application model for its own subclass, as a user project would."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.swapped_project.swapped_app"]  # noqa: F405
OAUTH2_PROVIDER_APPLICATION_MODEL = "swapped_app.TenantApplication"
