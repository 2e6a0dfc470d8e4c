"""The project's own pages: the landing page at ``/``."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from oauth_provider.settings import oauth2_settings


def flower_url(request: HttpRequest) -> str:
    """Where Flower answers: ``FLOWER_URL``, else this host on ``FLOWER_PORT`` (the run command's)."""
    if settings.FLOWER_URL:
        return settings.FLOWER_URL
    host = request.get_host()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return f"{request.scheme}://{name}:{settings.FLOWER_PORT}/"


def home(request: HttpRequest) -> HttpResponse:
    """What runs here, with links to the admin, Flower, health and discovery."""
    context = {
        "flower_url": flower_url(request),
        "discovery_url": reverse("oauth2_provider:oidc-connect-discovery-info")
        if oauth2_settings.OIDC_ENABLED
        else "",
    }
    return render(request, "home.html", context)
