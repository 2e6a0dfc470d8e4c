"""django-oauth-toolkit 3.4.1 behind gunicorn for the hot-path benchmark: ``tests/dot_project``'s
settings, answering on loopback."""

from tests.dot_project.settings import *  # noqa: F403

ALLOWED_HOSTS = ["127.0.0.1"]
