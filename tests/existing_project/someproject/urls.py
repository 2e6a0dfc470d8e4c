from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("o/", include("oauth_provider.urls")),
    path("maintenance/", include("oauth_tasks.urls")),
]
