"""Ready-made protected views for a project's own resources."""

from __future__ import annotations

from django.views.generic import View

from .mixins import (
    ClientProtectedResourceMixin,
    ClientProtectedScopedResourceMixin,
    ProtectedResourceMixin,
    ReadWriteScopedResourceMixin,
    ScopedProtectedResourceMixin,
)


class ProtectedResourceView(ProtectedResourceMixin, View):
    """A view reachable with any usable bearer token."""


class ScopedProtectedResourceView(ScopedProtectedResourceMixin, View):
    """A view reachable with a usable bearer token carrying ``required_scopes``."""


class ReadWriteScopedResourceView(ReadWriteScopedResourceMixin, ProtectedResourceView):
    """A view needing the read scope to read and the write scope to write."""


class ClientProtectedResourceView(ClientProtectedResourceMixin, View):
    """A view reachable by an authenticated client."""


class ClientProtectedScopedResourceView(ClientProtectedScopedResourceMixin, View):
    """A view reachable by an authenticated client or a bearer token with ``required_scopes``."""
