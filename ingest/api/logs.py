"""Rate-limited logging for what clients can cause.

A client can make the service log at will (a refused upload, a bad request,
a connection closed for being slow); a thousand of them must not write a
thousand lines, nor drown the lines that matter.  ``LogLimiter`` lets
``burst`` lines of one kind through per ``interval`` seconds and counts the
rest; the next line let through says how many were left out.

``LIMITED.warning(key, msg, *args)`` logs one per-client line under its
kind ``key``.  ``LimitFilter`` does the same for library loggers that
clients can make talk (aiohttp's server and access logs, asyncio's accept
errors when file descriptors run out): ``install()`` puts it on them while
the API runs, keyed by logger and message template.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

log = logging.getLogger("liveprof.api")

# loggers a client can make write, with the API up
NOISY = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "asyncio")
MAX_KINDS = 1024        # distinct keys remembered; past it the oldest windows are forgotten


class LogLimiter:
    """At most ``burst`` lines per kind per ``interval`` seconds."""

    def __init__(self, burst: int = 10, interval: float = 60.0):
        self.burst = burst
        self.interval = interval
        self._windows: dict[Hashable, list] = {}      # key -> [start, passed, suppressed]

    def allow(self, key: Hashable) -> tuple[bool, int]:
        """Whether a line of kind ``key`` may go out now, and how many of its
        kind were left out before it (to say so in that line)."""
        now = time.monotonic()
        w = self._windows.get(key)
        if w is None or now - w[0] >= self.interval:
            left_out = w[2] if w is not None else 0
            if w is None and len(self._windows) >= MAX_KINDS:
                self._windows.pop(next(iter(self._windows)))
            self._windows[key] = [now, 1, 0]
            return True, left_out
        if w[1] < self.burst:
            w[1] += 1
            left_out, w[2] = w[2], 0
            return True, left_out
        w[2] += 1
        return False, 0

    def warning(self, key: Hashable, msg: str, *args, logger: logging.Logger = log) -> None:
        ok, left_out = self.allow(key)
        if ok:
            if left_out:
                msg += f" ({left_out} similar lines left out)"
            logger.warning(msg, *args)


LIMITED = LogLimiter()


def _client_error(record: logging.LogRecord) -> None:
    """A request aiohttp could not parse is the client's fault, not the
    service's: one warning line naming it, without a traceback."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        what = " ".join(str(exc.message).split())[:200]
        # formatted here: the client's text may hold a '%'
        record.msg, record.args = f"{record.getMessage()}: bad HTTP ({exc.code}): {what}", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"


class LimitFilter(logging.Filter):
    """The limiter as a filter on a logger: keyed by logger and template;
    a client's unparsable request logged as one line."""

    def __init__(self, limiter: LogLimiter, by_template: bool = True):
        super().__init__()
        self.limiter = limiter
        self.by_template = by_template      # else one allowance for the whole logger

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:80] if self.by_template else "")
        ok, left_out = self.limiter.allow(key)
        if not ok:
            return False
        _client_error(record)
        if left_out:
            record.msg, record.args = \
                f"{record.getMessage()} ({left_out} similar lines left out)", None
        return ok


ACCESS = "aiohttp.access"     # one line per request: a larger allowance of its own


def install() -> list[LimitFilter]:
    """Rate-limit the loggers clients can make talk; returns the filters for ``remove``."""
    errors = LimitFilter(LogLimiter())
    access = LimitFilter(LogLimiter(burst=100, interval=10), by_template=False)
    for name in NOISY:
        logging.getLogger(name).addFilter(access if name == ACCESS else errors)
    return [errors, access]


def remove(filters: list[LimitFilter]) -> None:
    for name in NOISY:
        for flt in filters:
            logging.getLogger(name).removeFilter(flt)
