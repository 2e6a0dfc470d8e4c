from oauth_provider.models import AbstractAccessToken


class SlimAccessToken(AbstractAccessToken):
    """An access token model without the link to an ID token, as a project may swap in."""

    id_token = None
