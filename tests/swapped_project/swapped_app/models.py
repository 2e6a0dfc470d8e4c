from django.db import models

from oauth_provider.models import AbstractApplication


class TenantApplication(AbstractApplication):
    """An application that belongs to a tenant and may use several grants."""

    tenant = models.CharField(max_length=64)
    extra_grant_types = models.CharField(max_length=255, blank=True, default="")

    def allows_grant_type(self, *grant_types: str) -> bool:
        allowed = {self.authorization_grant_type, *self.extra_grant_types.split()}
        return bool(allowed.intersection(grant_types))
