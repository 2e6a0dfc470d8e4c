"""django-oauth-toolkit's ``oauth2_provider.utils``, for code that imports its helpers from there.

Each name is kept in the module that uses it; this one only re-exports them under DOT's names.
Nothing new belongs here.
"""

from __future__ import annotations

from .backends import bearer_token_from_header as parse_bearer_token
from .crypto import get_timezone, jwk_from_pem

__all__ = ["get_timezone", "jwk_from_pem", "parse_bearer_token"]
