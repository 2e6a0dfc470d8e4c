"""A running django-oauth-toolkit 3.4.1 installation, in the same database as the test provider.

Used in a subprocess by the adoption tests: DOT creates its own tables (its migrations) and issues
tokens through its own endpoints, exactly as the installation being adopted would have.
"""

import os

import dj_database_url

SECRET_KEY = "dot-project-test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.dot_project.urls"
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": os.environ["OIDC_RSA_PRIVATE_KEY"],
    "SCOPES": {"openid": "OpenID Connect", "read": "Read", "write": "Write"},
}
