"""A progress bar for management commands on a terminal that log lines do not break into.

The bar lives on one line of standard error (only when that is a terminal) and is redrawn after
each batch. Every log record goes through a filter that first wipes the bar's line, so a log line
starts at column 0 and the bar comes back below it on the next update.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import TextIO

CLEAR_LINE = "\r\033[K"


def human_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressBar:
    """``label  [#####-----]  1,200/5,000  24%  850 rows/s  ETA 4s`` for one phase at a time."""

    width = 24

    def __init__(self, stream: TextIO, totals: dict[str, int], labels: dict[str, str]) -> None:
        self.stream = stream
        self.totals = totals
        self.labels = labels
        self.started = time.monotonic()
        self.shown = False

    def update(self, phase: str, done: dict[str, int]) -> None:
        total = self.totals.get(phase, 0)
        count = done.get(phase, 0)
        fraction = min(1.0, count / total) if total else 1.0
        filled = round(self.width * fraction)
        elapsed = time.monotonic() - self.started
        all_done = sum(done.values())
        rate = all_done / elapsed if elapsed > 0 else 0.0
        left = max(0, sum(self.totals.values()) - all_done)
        eta = f"ETA {human_seconds(left / rate)}" if rate > 0 and left else ""
        line = (
            f"{self.labels.get(phase, phase)[:34]:<34} [{'#' * filled}{'-' * (self.width - filled)}] "
            f"{count:,}/{total:,} {100 * fraction:3.0f}%  {rate:,.0f} rows/s  {eta}"
        )
        self.stream.write(CLEAR_LINE + line.rstrip())
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()


class _ClearBarFirst(logging.Filter):
    def __init__(self, bar: ProgressBar) -> None:
        super().__init__()
        self.bar = bar

    def filter(self, record: logging.LogRecord) -> bool:
        self.bar.clear()
        return True


@contextmanager
def bar_below_logs(bar: ProgressBar):
    """While active, every handler of the root logger and of the loggers with their own handlers
    wipes the bar's line before it writes a record."""
    handlers = set(logging.getLogger().handlers)
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    hook = _ClearBarFirst(bar)
    for handler in handlers:
        handler.addFilter(hook)
    try:
        yield bar
    finally:
        for handler in handlers:
            handler.removeFilter(hook)
        bar.clear()


@contextmanager
def logger_level(name: str, level: int):
    """Raise ``name``'s level for the duration (lower levels are left as they are)."""
    logger = logging.getLogger(name)
    previous = logger.level
    if logger.getEffectiveLevel() < level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
