# One image for every service of the provider: web, worker, beat, Flower and the one-shot setup.
# Which one a container runs is its command (``oauth-provider-run <service>``, see config/run.py).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    DATA_DIR=/app/var

WORKDIR /app

# An unprivileged user owns nothing but the data folder.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app

# Dependencies first, so a change of the code alone reuses this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p config oauth_provider oauth_tasks \
    && touch config/__init__.py oauth_provider/__init__.py oauth_tasks/__init__.py celeryconfig.py manage.py \
    && pip install . \
    && pip uninstall --yes oauth-provider-maintenance \
    && rm -rf config oauth_provider oauth_tasks celeryconfig.py manage.py build *.egg-info

COPY . .
RUN pip install --no-deps -e . \
    && mkdir -p /app/var \
    && chown app:app /app/var \
    && chmod 0700 /app/var

USER app
EXPOSE 8000 5555

# No default service: every compose service names its own.
CMD ["oauth-provider-run", "--help"]
