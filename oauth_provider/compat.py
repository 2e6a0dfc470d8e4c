"""Names django-oauth-toolkit projects import from ``oauth2_provider.compat``."""

from django.contrib.auth.decorators import login_not_required

__all__ = ["login_not_required"]
