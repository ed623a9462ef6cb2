"""A test-only data plane: a real line-based TCP server plugged into the process shell.

It lets the shell's tests (signals, drain, reload, workers, health) run against real sockets before and beside the
PostgreSQL and Redis planes. Loaded into ``nexus-fast serve`` through ``NEXUS_FAST_EXTRA_PLANES=
tests.integration.echo_plane:create_plane``; it listens on ``NEXUS_ECHO_LISTEN`` (host:port).

Requests, one per line:
- ``PID`` -> the worker's pid (which worker of several served this connection);
- ``HOLD <seconds>`` -> ``holding`` at once (the request is now in flight), then ``done`` after that long: an
  in-flight request a test can hold across SIGTERM;
- ``BLOCK <seconds>`` -> blocks the whole event loop that long (a hung worker, for the watchdog);
- ``INTERVAL`` -> the ``admin.health_check_interval`` of the config the plane currently runs (shows reloads);
- anything else is echoed back.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

from nexus_fast.config.load import to_dict
from nexus_fast.config.schema import NexusConfig
from nexus_fast.config.section import parse_listen
from nexus_fast.observe.metrics import Metrics
from nexus_fast.server.plane import BackendHealth

LISTEN_ENV = "NEXUS_ECHO_LISTEN"
# A reload whose admin.health_check_timeout equals this is refused, to test atomic rollback.
REFUSED_TIMEOUT = 0.123


class EchoPlane:
    name = "echo"

    def __init__(self, config: NexusConfig, metrics: Metrics) -> None:
        self.config = config
        self.listen = os.environ[LISTEN_ENV]
        self.server: asyncio.Server | None = None
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.requests = metrics.counter("nexus_echo_requests_total", "Requests served by the test echo plane.")

    async def start(self) -> None:
        host, port = parse_listen(self.listen)
        self.server = await asyncio.start_server(self._serve, host, port, reuse_port=True, family=socket.AF_INET)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while line := await reader.readline():
                self.in_flight += 1
                self.idle.clear()
                try:
                    writer.write(await self._answer(line.decode().strip(), writer) + b"\n")
                    await writer.drain()
                finally:
                    self.in_flight -= 1
                    if self.in_flight == 0:
                        self.idle.set()
                self.requests.inc()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _answer(self, request: str, writer: asyncio.StreamWriter) -> bytes:
        if request == "PID":
            return str(os.getpid()).encode()
        if request.startswith("HOLD "):
            writer.write(b"holding\n")
            await writer.drain()
            await asyncio.sleep(float(request.split()[1]))
            return b"done"
        if request.startswith("BLOCK "):
            time.sleep(float(request.split()[1]))  # deliberately blocking: the worker's loop stops
            return b"unblocked"
        if request == "INTERVAL":
            return str(to_dict(self.config)["admin"]["health_check_interval"]).encode()
        return request.encode()

    async def reload(self, config: NexusConfig) -> None:
        if config.admin.health_check_timeout == REFUSED_TIMEOUT:
            raise ValueError("echo plane refuses this config")
        self.config = config

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def drain(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except TimeoutError:
            pass
        for writer in list(self.writers):
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()

    async def check_health(self, timeout: float) -> list[BackendHealth]:
        return [BackendHealth("echo", "echo/self", self.listen, True, "", 0.0)]


def create_plane(config: NexusConfig, metrics: Metrics) -> EchoPlane:
    return EchoPlane(config, metrics)
