"""A plane running in a background thread (its own uvloop loop) so hypothesis can drive sockets synchronously;
unhandled loop exceptions are collected and fail the test that caused them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from nexus_fast._testing.ports import free_port
from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.plane import create_plane


class ThreadedPlane:
    def __init__(self, postgres: dict[str, Any]):
        self.port = free_port()
        section = {"listen": f"127.0.0.1:{self.port}", "auth_type": "trust", "default_pool_size": 2,
                   "client_login_timeout": "2s", "databases": {"postgres": {}}}
        section.update(postgres)
        self.config = NexusConfig.model_validate({"postgres": section})
        self.errors: list[str] = []
        self.loop = uvloop.new_event_loop()
        self.loop.set_exception_handler(lambda _l, ctx: self.errors.append(str(ctx.get("exception") or ctx["message"])))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("plane did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.plane = create_plane(self.config, Metrics())
        self.loop.run_until_complete(self.plane.start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.plane.close())
        self.loop.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)


@pytest.fixture(scope="module", params=["transaction", "session"])
def threaded_plane(request) -> Iterator[ThreadedPlane]:
    plane = ThreadedPlane({"pool_mode": request.param})
    try:
        yield plane
    finally:
        plane.close()
    assert not plane.errors, plane.errors
