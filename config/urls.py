from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/", include("config.account_urls")),
    path("admin/", admin.site.urls),
    path("o/", include("oauth_provider.urls")),
    path("maintenance/", include("oauth_tasks.urls")),
]
