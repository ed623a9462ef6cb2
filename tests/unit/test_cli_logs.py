"""Structured logs (nexus_fast.observe.logging): one line per event, logfmt or JSON, parseable back."""

from __future__ import annotations

import io
import json
import logging

import pytest

from nexus_fast._testing.proxy import parse_logfmt
from nexus_fast.observe import logging as nexus_logging


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nexus", False):
            root.removeHandler(handler)


def test_logfmt_lines_carry_event_and_fields_and_parse_back(stream) -> None:
    nexus_logging.configure("logfmt", "info", stream)
    log = nexus_logging.get_logger("test")
    log.info("reload_rejected", reason='bad "value" = 5\nsecond line', problems=2, ok=False)
    log.debug("hidden")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    fields = parse_logfmt(lines[0])
    assert fields["event"] == "reload_rejected" and fields["level"] == "info"
    assert fields["logger"] == "nexus_fast.test" and fields["pid"].isdigit()
    assert fields["reason"] == 'bad "value" = 5\nsecond line'
    assert fields["problems"] == "2" and fields["ok"] == "false"
    assert fields["ts"].endswith("Z")


def test_json_lines_and_exceptions(stream) -> None:
    nexus_logging.configure("json", "debug", stream)
    log = nexus_logging.get_logger("test")
    log.debug("probe", backend="a", latency_ms=1.25)
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("crashed", worker=1)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "probe" and first["latency_ms"] == 1.25 and first["level"] == "debug"
    assert second["event"] == "crashed" and "ValueError: broken" in second["exc"] and second["level"] == "error"


def test_reconfigure_replaces_the_handler_and_libraries_log_warnings_only(stream) -> None:
    nexus_logging.configure("logfmt", "warning", io.StringIO())
    nexus_logging.configure("logfmt", "info", stream)
    logging.getLogger("somelib").info("chatty")
    logging.getLogger("somelib").warning("careful")
    nexus_logging.get_logger("x").info("once")
    events = [parse_logfmt(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["careful", "once"]
