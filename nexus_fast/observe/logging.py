"""Structured logs: one line per event, ``key=value`` (logfmt) or JSON, on stderr.

Every event has a short name (``event=reload_failed``) and fields, so a log pipeline can filter on them without
regular expressions; the same words are used as in config keys and metric names. The stdlib ``logging`` module
does the routing and levels (so libraries' own log records come out in the same format); this module only
formats records and gives components a small ``log.info("event", key=value)`` surface.

    from nexus_fast.observe.logging import get_logger
    log = get_logger("server")
    log.info("listening", plane="postgres", address="127.0.0.1:6432")
    # ts=2026-11-27T04:00:00.123Z level=info logger=nexus_fast.server pid=4242 event=listening plane=postgres ...
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Literal

LogFormat = Literal["logfmt", "json"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ROOT_LOGGER = "nexus_fast"  # the package name: planes using logging.getLogger(__name__) share the level


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    # logfmt: quote values with spaces, quotes or '='; escape backslashes, quotes and newlines.
    if text == "" or any(ch in text for ch in ' "=\n\t\\'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    return text


class StructuredFormatter(logging.Formatter):
    """Formats a record as one logfmt or JSON line: ts, level, logger, pid, event, then the event's fields."""

    def __init__(self, fmt: LogFormat = "logfmt") -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "nexus_fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc"] = self.formatException(record.exc_info)
        if self.fmt == "json":
            return json.dumps(fields, default=str, separators=(",", ":"))
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


class EventLogger:
    """``log.info("event_name", key=value, ...)``: a stdlib logger whose records carry structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"nexus_fields": fields}, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the current exception's traceback in the ``exc`` field."""
        self._log(logging.ERROR, event, True, fields)


def get_logger(component: str) -> EventLogger:
    """The structured logger of a component (``nexus_fast.<component>``)."""
    return EventLogger(logging.getLogger(f"{ROOT_LOGGER}.{component}"))


def configure(fmt: LogFormat = "logfmt", level: str = "info", stream: Any = None) -> None:
    """Route every log record (ours and libraries') through one structured handler on stderr.

    Called at start-up and again on reload (``server.log_format`` / ``server.log_level`` may change).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nexus", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(StructuredFormatter(fmt))
    handler._nexus = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and up
    logging.getLogger(ROOT_LOGGER).setLevel(_LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per /metrics scrape is noise
