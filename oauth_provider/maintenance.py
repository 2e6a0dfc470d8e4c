"""The provider's hook towards a maintenance worker, without depending on one.

The provider must not import ``oauth_tasks`` (the worker imports the provider, not the other way
round). A worker app that can run cleanup in the background registers a dispatcher here from its
``AppConfig.ready()``; ``cleartokens --async`` uses it and fails clearly when none is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class AsyncDispatcher(Protocol):
    def __call__(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        trigger: str,
        dry_run: bool = False,
        batch_size: int | None = None,
        interval: float | None = None,
        triggered_by: str = "",
    ) -> tuple[Any, bool]:
        """Start a background run; return ``(run, created)`` where ``run.pk`` identifies it."""


class NoAsyncDispatcher(RuntimeError):
    """No maintenance worker app registered a dispatcher (``oauth_tasks`` not installed?)."""


class DispatchUnavailable(RuntimeError):
    """The dispatcher cannot reach its worker (no broker answers); its message names what it tried.

    Raised before anything is started, or with the run it created already marked failed, so no
    active run is left behind to block the next dispatch.
    """


_dispatcher: AsyncDispatcher | None = None


def set_async_dispatcher(dispatcher: AsyncDispatcher | Callable[..., tuple[Any, bool]] | None) -> None:
    """Install (or with None, remove) the function that starts background maintenance runs."""
    global _dispatcher
    _dispatcher = dispatcher


def get_async_dispatcher() -> AsyncDispatcher:
    """The installed dispatcher, or NoAsyncDispatcher explaining how to get one."""
    if _dispatcher is None:
        raise NoAsyncDispatcher(
            "no background maintenance worker is installed: add 'oauth_tasks' to INSTALLED_APPS "
            "(and run a Celery worker on the 'maintenance' queue), or run without --async"
        )
    return _dispatcher
