"""The provider's views; import them from here."""

from .base import AuthorizationView, BaseAuthorizationView, RevokeTokenView, TokenView
from .generic import (
    ClientProtectedResourceView,
    ClientProtectedScopedResourceView,
    ProtectedResourceView,
    ReadWriteScopedResourceView,
    ScopedProtectedResourceView,
)
from .introspect import IntrospectTokenView
from .logout import RPInitiatedLogoutView
from .mixins import (
    ClientProtectedResourceMixin,
    ClientProtectedScopedResourceMixin,
    OAuthLibMixin,
    ProtectedResourceMixin,
    ReadWriteScopedResourceMixin,
    ScopedProtectedResourceMixin,
    ScopedResourceMixin,
)
from .oidc import ConnectDiscoveryInfoView, JwksInfoView, UserInfoView

__all__ = [
    "AuthorizationView",
    "BaseAuthorizationView",
    "ClientProtectedResourceMixin",
    "ClientProtectedResourceView",
    "ClientProtectedScopedResourceMixin",
    "ClientProtectedScopedResourceView",
    "ConnectDiscoveryInfoView",
    "IntrospectTokenView",
    "JwksInfoView",
    "OAuthLibMixin",
    "ProtectedResourceMixin",
    "ProtectedResourceView",
    "ReadWriteScopedResourceMixin",
    "ReadWriteScopedResourceView",
    "RevokeTokenView",
    "RPInitiatedLogoutView",
    "ScopedProtectedResourceMixin",
    "ScopedResourceMixin",
    "ScopedProtectedResourceView",
    "TokenView",
    "UserInfoView",
]
