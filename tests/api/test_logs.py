"""The log limiter that keeps client-caused lines bounded (issue 12, item 5):
a burst of one kind goes out, the rest is counted and said in the next line
let through; other kinds are not held back; a client's unparsable request is
one line without a traceback, its text never taken as a format string."""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import BadHttpMessage

from ingest.api.logs import LimitFilter, LogLimiter


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def logger_with(flt: logging.Filter, name: str) -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    lines = Lines()
    logger.handlers[:] = [lines]
    logger.filters[:] = [flt]
    return logger, lines


def test_a_burst_goes_out_the_rest_is_counted_and_said():
    limiter = LogLimiter(burst=3, interval=0.2)
    logger, lines = logger_with(LimitFilter(limiter), "test.liveprof.limiter")
    for i in range(1000):
        logger.warning("client %s sent junk", i)
        logger.info("another kind %d", i)
    shown = [r.getMessage() for r in lines.records]
    assert shown.count("client 0 sent junk") == 1
    assert len([m for m in shown if m.startswith("client")]) == 3
    assert len([m for m in shown if m.startswith("another")]) == 3
    time.sleep(0.25)
    logger.warning("client %s sent junk", "late")
    assert lines.records[-1].getMessage() == "client late sent junk (997 similar lines left out)"


def test_an_unparsable_request_is_one_line_without_traceback():
    logger, lines = logger_with(LimitFilter(LogLimiter()), "test.liveprof.aiohttp")
    try:
        raise BadHttpMessage("Data after `Connection: close`: b'100% %s %d'")
    except BadHttpMessage as exc:
        logger.error("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = lines.records
    text = logging.Formatter().format(record)
    assert record.levelno == logging.WARNING and "Traceback" not in text
    assert text.startswith("Error handling request from 127.0.0.1: bad HTTP (400)")
    assert "100% %s %d" in text
