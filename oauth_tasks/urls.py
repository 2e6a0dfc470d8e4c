"""URLs of the maintenance app, mounted under ``/maintenance/`` by the project."""

from django.urls import path

from .health_views import health

app_name = "oauth_tasks"

urlpatterns: list = [
    path("health/", health, name="health"),
]
