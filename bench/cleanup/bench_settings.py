"""This project's settings as the cleanup benchmark runs them: django-oauth-toolkit's cleanup rules.

The project turns ``REFRESH_TOKEN_REUSE_PROTECTION`` on by default (the toolkit: off), which keeps
revoked refresh tokens until they would have expired; the benchmark compares both on the toolkit's
defaults, so both delete the same rows.
"""

from config.settings import *  # noqa: F403

OAUTH2_PROVIDER = {**OAUTH2_PROVIDER, "REFRESH_TOKEN_REUSE_PROTECTION": False}  # noqa: F405
