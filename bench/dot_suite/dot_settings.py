"""DOT's test settings, with the app and model labels of this project."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = tuple("oauth_provider" if app == "oauth2_provider" else app for app in INSTALLED_APPS)
# DOT's test app migrations depend on DOT's migration names: create its tables from the models.
MIGRATION_MODULES = {"tests": None}
