"""A project that swaps the access token model for one without ``id_token``."""

from tests.swapped_project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.swapped_project.slim_app"]  # noqa: F405
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "slim_app.SlimAccessToken"
