"""Signals of the provider."""

from django.dispatch import Signal

# Sent by the token endpoint after it issued an access token: ``request`` and ``token``.
app_authorized = Signal()
