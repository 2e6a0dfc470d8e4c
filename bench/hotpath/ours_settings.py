"""The project's settings for the hot-path benchmark, with the client secret memory set from
``BENCH_CLIENT_SECRET_VERIFY_CACHE_SECONDS`` (unset: the default)."""

import os

from config.settings import *  # noqa: F403
from config.settings import OAUTH2_PROVIDER

if os.environ.get("BENCH_CLIENT_SECRET_VERIFY_CACHE_SECONDS"):
    OAUTH2_PROVIDER["CLIENT_SECRET_VERIFY_CACHE_SECONDS"] = int(
        os.environ["BENCH_CLIENT_SECRET_VERIFY_CACHE_SECONDS"]
    )
