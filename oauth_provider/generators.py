"""Client id and client secret generators, chosen through the settings object."""

from __future__ import annotations

from oauthlib.common import UNICODE_ASCII_CHARACTER_SET
from oauthlib.common import generate_client_id as oauthlib_generate_client_id

from .settings import oauth2_settings


class BaseHashGenerator:
    """A generator of random strings; subclasses implement ``hash()``."""

    def hash(self) -> str:
        raise NotImplementedError()


class ClientIdGenerator(BaseHashGenerator):
    def hash(self) -> str:
        """40 characters from a set without ':' so the id is safe in HTTP Basic (RFC 2617)."""
        return oauthlib_generate_client_id(length=40, chars=UNICODE_ASCII_CHARACTER_SET)


class ClientSecretGenerator(BaseHashGenerator):
    def hash(self) -> str:
        length = oauth2_settings.CLIENT_SECRET_GENERATOR_LENGTH
        chars = UNICODE_ASCII_CHARACTER_SET
        return oauthlib_generate_client_id(length=length, chars=chars)


def generate_client_id() -> str:
    return oauth2_settings.CLIENT_ID_GENERATOR_CLASS().hash()


def generate_client_secret() -> str:
    return oauth2_settings.CLIENT_SECRET_GENERATOR_CLASS().hash()
