"""Django REST framework integration, under django-oauth-toolkit's names (install the ``drf`` extra)."""

from .authentication import OAuth2Authentication
from .permissions import (
    IsAuthenticatedOrTokenHasScope,
    TokenHasReadWriteScope,
    TokenHasResourceScope,
    TokenHasScope,
    TokenMatchesOASRequirements,
)

__all__ = [
    "IsAuthenticatedOrTokenHasScope",
    "OAuth2Authentication",
    "TokenHasReadWriteScope",
    "TokenHasResourceScope",
    "TokenHasScope",
    "TokenMatchesOASRequirements",
]
