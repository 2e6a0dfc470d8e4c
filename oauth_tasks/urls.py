"""URLs of the maintenance app, mounted under ``/maintenance/`` by the project."""

from django.urls import path

from . import api
from .health_views import health

app_name = "oauth_tasks"

urlpatterns: list = [
    path("health/", health, name="health"),
    # The dispatch API (oauth_tasks/api.py): staff with MaintenanceRun permissions, by session or
    # by a bearer token with the "maintenance" scope.
    path("api/jobs/", api.jobs, name="api-jobs"),
    path("api/runs/", api.runs, name="api-runs"),
    path("api/runs/<int:run_id>/", api.run_detail, name="api-run"),
    path("api/runs/<int:run_id>/cancel/", api.run_cancel, name="api-run-cancel"),
    path("api/runs/<int:run_id>/resume/", api.run_resume, name="api-run-resume"),
]
