"""URLs of the provider, mounted under ``/o/`` by the project (names as django-oauth-toolkit)."""

from django.urls import path, re_path

from . import views

app_name = "oauth2_provider"

base_urlpatterns = [
    path("authorize/", views.AuthorizationView.as_view(), name="authorize"),
    path("token/", views.TokenView.as_view(), name="token"),
    path("revoke_token/", views.RevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", views.IntrospectTokenView.as_view(), name="introspect"),
]

oidc_urlpatterns = [
    # The discovery document is also served without the trailing slash some clients omit.
    re_path(
        r"^\.well-known/openid-configuration/?$",
        views.ConnectDiscoveryInfoView.as_view(),
        name="oidc-connect-discovery-info",
    ),
    path(".well-known/jwks.json", views.JwksInfoView.as_view(), name="jwks-info"),
    path("userinfo/", views.UserInfoView.as_view(), name="user-info"),
    # 404 unless OIDC_RP_INITIATED_LOGOUT_ENABLED (checked per request, like OIDC_ENABLED).
    path("logout/", views.RPInitiatedLogoutView.as_view(), name="rp-initiated-logout"),
]

urlpatterns = base_urlpatterns + oidc_urlpatterns
