"""kombu's Redis transport, hardened against the two broker faults that made a worker exit.

``config.celery`` registers :class:`Transport` for the ``redis://`` and ``rediss://`` schemes, so
every process of the project (worker, beat, Flower, web) talks to Redis through it. It is kombu's
own transport with two changes:

* **An undecodable message is dropped, not fatal.** kombu decodes the envelope of each message it
  pops from a queue list (``BRPOP``) and lets a ``JSONDecodeError`` or ``UnicodeDecodeError``
  escape into the worker's event loop, which stops the worker ("Unrecoverable error"); JSON without
  kombu's envelope makes it drop its connection. Here such a message (anything pushed onto the list
  by hand or by a foreign client) is logged with its queues and the error, never its content, and
  dropped: ``BRPOP`` already removed it from Redis.
* **A broker restart is a reconnect, not an exit.** When the connection to Redis drops while the
  worker holds unacknowledged messages (a batch waiting for its countdown), Celery closes the
  broken connection; kombu's channel then tries to give those messages back through a connection
  whose parameters were already cleared, and raises ``AttributeError`` ("'NoneType' object has no
  attribute 'hostname'"), which the worker treats as unrecoverable. Here that case is a connection
  error, which kombu ignores while closing, so the worker reconnects as it does for any broker
  outage. The messages are not lost: Redis keeps them in its unacknowledged set and gives them back
  after the visibility timeout, and the maintenance watchdog re-enqueues an overdue batch long
  before that (fenced by the batch number, so whichever copy comes second does nothing).
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger("oauth_tasks.broker")


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options):
        try:
            return super()._brpop_read(**options)
        except (ValueError, TypeError, KeyError) as exc:
            # Not UTF-8, not JSON, or JSON without kombu's envelope (a KeyError, which kombu counts
            # as a connection error): BRPOP already took it off the list, so the only choice left is
            # whether the worker survives it.
            logger.error(
                "dropped an undecodable message from a broker queue of %s: %s",
                ",".join(sorted(self.active_queues)),
                type(exc).__name__,
                extra={"event": "undecodable_message", "error": type(exc).__name__},
            )
            raise Empty() from None

    def _connparams(self, asynchronous: bool = False):
        if self.connection.client is None:
            # The connection was closed under us (broker gone): there is nothing to connect with.
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def register() -> None:
    """Make ``redis://`` and ``rediss://`` URLs use this transport in this process (as kombu's do)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
    TRANSPORT_ALIASES["rediss"] = f"{__name__}:Transport"
