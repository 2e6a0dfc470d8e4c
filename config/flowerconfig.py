"""Flower's configuration file (``--conf``, set by the run command): Flower executes it at start.

Flower answers ``/metrics`` (Prometheus) without asking for the credentials of ``--basic-auth``
(``FLOWER_BASIC_AUTH``), which protects every other page: the metrics name every task, worker and
queue. This puts the metrics behind the same authentication as the rest of Flower. ``/healthcheck``
stays open (it says "OK" and nothing else) for the container's health check.
"""

from flower.views import monitor
from tornado import web

if not getattr(monitor.Metrics.get, "_requires_flower_auth", False):
    monitor.Metrics.get = web.authenticated(monitor.Metrics.get)
    monitor.Metrics.get._requires_flower_auth = True
