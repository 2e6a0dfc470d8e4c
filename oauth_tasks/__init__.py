"""The provider's maintenance worker: chunked cleanup, revocation and migration jobs on Celery."""
