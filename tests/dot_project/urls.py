from django.http import JsonResponse
from django.urls import include, path
from oauth2_provider.views import ProtectedResourceView


class WhoAmIView(ProtectedResourceView):
    """A protected resource of django-oauth-toolkit, as in its tutorial."""

    def get(self, request):
        owner = request.resource_owner
        return JsonResponse({"user": owner.get_username() if owner else None})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/whoami/", WhoAmIView.as_view()),
]
