"""URLs of the maintenance app, mounted under ``/maintenance/`` by the project."""

app_name = "oauth_tasks"

urlpatterns: list = []
