"""Suite-wide fixtures: uvloop as the event loop, unhandled loop exceptions fail the test, twins of native code."""

from __future__ import annotations

import asyncio
import types

import pytest
import uvloop

from nexus_fast import _extensions


def pytest_asyncio_loop_factories(config, item):
    """Every async test runs on uvloop, the loop nexus-fast serves on."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
async def fail_on_unhandled_loop_exceptions():
    """An exception nobody awaited (a crashed callback, a task that died silently) fails the test that caused it."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    yield
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    if unhandled:
        messages = "; ".join(str(c.get("exception") or c.get("message")) for c in unhandled)
        pytest.fail(f"unhandled event-loop exception(s): {messages}")


def twin_params(name: str) -> list:
    """pytest params for the compiled and the pure implementation of a native module.

    The compiled one must exist unless extensions are disabled: a silent fallback would hide a broken build.
    """
    return [pytest.param("native", id=f"{name}-native"), pytest.param("pure", id=f"{name}-pure")]


def load_twin(name: str, which: str) -> types.ModuleType:
    if which == "pure":
        return _extensions.pure(name)
    if _extensions.extensions_disabled():
        pytest.skip("NEXUS_FAST_NO_EXTENSIONS is set")
    module = _extensions.load_native(name)
    if module is None:
        pytest.fail(f"nexus_fast._native.{name} is not compiled (run `pip install -e .`)")
    return module
