"""Settings of the project, read from the environment.

Every value a deployment changes comes from an environment variable; the defaults give a working
single-machine setup (SQLite under ``DATA_DIR``) so that a fresh checkout runs with no services.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.embedded_redis import recorded_broker_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var")).resolve()
# It holds the SQLite database, the secret key and the development signing key: owner only.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def secret_key_from_file(path: Path) -> str:
    """Django's secret key when SECRET_KEY is unset: random, made once, kept in DATA_DIR (mode 0600).

    The embedded default then needs no configuration and still has a key nobody else knows;
    processes starting together agree on one key because the file is created exclusively.
    """
    import secrets
    import time

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.1)  # another process is still writing the file it just created
    raise ImproperlyConfigured(f"{path} holds no secret key")


SECRET_KEY = os.environ.get("SECRET_KEY", "") or secret_key_from_file(DATA_DIR / "secret_key")
if SECRET_KEY in {"change-me", "changeme"} and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY is still the example value: set a random one")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, got {raw!r}")
    return value


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """``HTTP_X_FORWARDED_PROTO,https``: the header a TLS-terminating proxy sets, and its value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = (part.strip() for part in raw.partition(","))
    if not header.startswith("HTTP_") or not value:
        raise ImproperlyConfigured(
            f"{name} must be 'HTTP_<HEADER>,<value>' as Django's request.META names it, "
            f"e.g. HTTP_X_FORWARDED_PROTO,https; got {raw!r}"
        )
    return header, value


# Transport security: TLS only, secure cookies and HSTS unless DEBUG is on. Behind a proxy that
# terminates TLS, set SECURE_PROXY_SSL_HEADER so that Django knows a request came over https (the
# proxy must set that header and drop one sent by the client). The health endpoint stays reachable
# over plain HTTP for the container's own health check.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^maintenance/health/$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "oauth_provider",
    "oauth_tasks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the collected static files (the admin's CSS and JS) from the WSGI server itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Bearer tokens of this provider authenticate requests to the project's own views.
    "oauth_provider.middleware.OAuth2TokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "oauth_provider.backends.OAuth2Backend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's pages (sign-in, password reset, landing, errors) come before the apps'.
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists.

    SQLite creates a missing database file with the process umask (0644: readable by every local
    user) and gives its ``-wal`` and ``-shm`` files the database file's mode; an empty file is a
    valid empty database, so creating it first makes all three private.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


_default_db = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or _default_db,
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        # A kept connection is checked before its first use in a request or a task, so one the
        # database closed meanwhile (a restart, an idle timeout) is replaced instead of failing.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the web server write to the same file: wait for a lock instead of failing,
    # and use WAL so that readers never block the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
    _sqlite_name = str(DATABASES["default"]["NAME"])
    if _sqlite_name and _sqlite_name != ":memory:" and not _sqlite_name.startswith("file:"):
        Path(_sqlite_name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private_file(Path(_sqlite_name))


DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds the provider's counters of failed client authentications (rate limiting) and the
# generation of the revocation watermarks each process keeps. Redis (CACHE_URL, e.g.
# redis://:password@redis:6379/2) shares them between every web process and worker; without it each
# process counts on its own, and every token check queries the watermarks. A command run from
# another shell while the run command's embedded Redis is up uses its database 2, as the run
# command's children do, so a revocation it writes reaches their copies at once.
CACHE_URL = os.environ.get("CACHE_URL", "")
if not CACHE_URL and not os.environ.get("CELERY_BROKER_URL") and recorded_broker_url(DATA_DIR):
    CACHE_URL = recorded_broker_url(DATA_DIR).rsplit("/", 1)[0] + "/2"
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "oauth",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # collectstatic fills it; whitenoise serves it
# End users sign in on the project's own page (staff still use the admin's); after signing in with
# no "next", and after signing out, they land on the start page.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = None  # registration/logged_out.html

# Password reset mails: printed on the web process's output unless EMAIL_BACKEND names a real one
# (e.g. django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST / EMAIL_PORT).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "webmaster@localhost")

# Where the landing page links to Flower: FLOWER_URL, else this host on FLOWER_PORT.
FLOWER_URL = os.environ.get("FLOWER_URL", "")
FLOWER_PORT = os.environ.get("FLOWER_PORT") or "5555"

# The provider. Keys not listed keep django-oauth-toolkit's defaults (see oauth_provider/settings.py).
OAUTH2_PROVIDER = {
    "OIDC_ENABLED": env_bool("OIDC_ENABLED", True),
    "OIDC_RSA_PRIVATE_KEY": os.environ.get("OIDC_RSA_PRIVATE_KEY", ""),
    # The issuer, when it must not follow the request's scheme and host (empty: derived from them).
    "OIDC_ISS_ENDPOINT": os.environ.get("OIDC_ISS_ENDPOINT", ""),
    "SCOPES": {
        "read": "Reading scope",
        "write": "Writing scope",
        "openid": "OpenID Connect scope",
        "introspection": "Introspect tokens",
        "maintenance": "Start and watch maintenance runs",
    },
    "DEFAULT_SCOPES": ["read", "write"],
    # Protected resources answer as RFC 6750 says (401 with a challenge) instead of a bare 403.
    "RESOURCE_SERVER_BEARER_CHALLENGE": True,
}
if os.environ.get("OIDC_RSA_PRIVATE_KEY_FILE"):
    OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"] = Path(os.environ["OIDC_RSA_PRIVATE_KEY_FILE"]).read_text()


def dev_oidc_private_key(path: Path) -> str:
    """The RSA key signing RS256 ID tokens when none is configured: made once, kept in DATA_DIR.

    For the embedded default only; a deployment sets OIDC_RSA_PRIVATE_KEY(_FILE), shared by
    every web process. The file is created exclusively (mode 0600), so processes starting
    together agree on one key.
    """
    import time

    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    for _ in range(50):
        text = path.read_text()
        if "END PRIVATE KEY" in text:
            return text
        time.sleep(0.1)  # another process is still writing the file it just created
    raise ImproperlyConfigured(f"{path} does not hold a PEM private key")


if OAUTH2_PROVIDER["OIDC_ENABLED"] and not OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"]:
    OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"] = dev_oidc_private_key(DATA_DIR / "oidc.key")

# Celery: the configuration itself lives in the top-level celeryconfig module.
# Unset: the URL a running ``oauth-provider-run`` recorded for its embedded Redis (celeryconfig too).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or recorded_broker_url(DATA_DIR) or ""

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
# LOG_FORMAT=json writes one JSON object per line (with the extra fields of each record); "plain" is
# the default. Every line passes the redaction filter, whatever its logger.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "oauth_tasks.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {
            "()": "oauth_tasks.logging.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "oauth_tasks.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        }
    },
    "loggers": {
        "oauth_provider": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "oauth_tasks": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # The development server's request lines (``--dev``), which Django otherwise writes with a
        # handler of its own that does not redact.
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
    # Everything else (Django, Celery, gunicorn's error log) through the same handler. A Celery
    # worker keeps a root logger that already has a handler (worker_hijack_root_logger is off).
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}


def env_seconds(name: str) -> float | None:
    """A non-negative number of seconds from the environment; None when unset."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ImproperlyConfigured(f"{name} must be a non-negative number of seconds, got {raw!r}")
    return value


# The maintenance app (see oauth_tasks/conf.py for every key and its default).
OAUTH_MAINTENANCE = {
    "HEALTH_EXPIRED_RATIO_WARNING": float(os.environ.get("HEALTH_EXPIRED_RATIO_WARNING", "0.5")),
}
for _key, _variable in (
    ("STALL_SECONDS", "MAINTENANCE_STALL_SECONDS"),
    ("WATCHDOG_INTERVAL_SECONDS", "MAINTENANCE_WATCHDOG_INTERVAL"),
):
    if env_seconds(_variable) is not None:
        OAUTH_MAINTENANCE[_key] = env_seconds(_variable)
if env_seconds("MAINTENANCE_MAX_REPLICA_LAG") is not None:
    OAUTH_MAINTENANCE["MAX_REPLICA_LAG"] = env_seconds("MAINTENANCE_MAX_REPLICA_LAG")
if os.environ.get("MAINTENANCE_PACING", "").strip():
    OAUTH_MAINTENANCE["PACING"] = env_bool("MAINTENANCE_PACING", False)

# A replica of the default database (a PostgreSQL standby, a MySQL/MariaDB replica): paced
# maintenance runs read its lag and wait while it is above MAX_REPLICA_LAG. Nothing is routed to it.
if os.environ.get("REPLICA_DATABASE_URL"):
    DATABASES["replica"] = dj_database_url.parse(os.environ["REPLICA_DATABASE_URL"], conn_max_age=0)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    # A replica that does not answer is skipped after this, not waited for while a batch holds its run.
    if DATABASES["replica"]["ENGINE"].endswith(("postgresql", "mysql")):
        DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    OAUTH_MAINTENANCE["REPLICA_DATABASES"] = ["replica"]
