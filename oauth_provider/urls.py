"""URLs of the provider, mounted under ``/o/`` by the project."""

app_name = "oauth2_provider"

urlpatterns: list = []
