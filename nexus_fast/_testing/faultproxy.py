"""A fault-injecting TCP proxy between a client and a server (as asyncpg's ``_testbase/fuzzer.py``).

It runs its own event loop in its own thread, so synchronous tests, async tests (on any loop) and bench scripts
use it the same way, and a test's loop blocking never stalls the proxy. Faults are switched at runtime and apply
to connections already open as well as to new ones::

    from nexus_fast._testing.faultproxy import FaultProxy

    with FaultProxy("127.0.0.1", 5432) as fp:   # listens on 127.0.0.1:<free port>, forwards to 127.0.0.1:5432
        dsn = f"postgresql://postgres@127.0.0.1:{fp.port}/postgres"
        fp.delay(0.2)        # every chunk, both directions, forwarded 200 ms late
        fp.blackhole()       # (alias fp.drop()) accept and read, forward nothing: peers hang until their timeouts
        fp.cut()             # reset (RST) every open connection; new ones are reset on accept
        fp.refuse()          # close the listener: connects are refused (fp.pass_through() re-opens it)
        fp.pass_through()    # back to normal
        fp.connections       # currently open client connections
        fp.accepted          # client connections accepted so far
        fp.set_mode("delay", delay=0.1)   # the same switches by name, for parametrized tests

Modes: ``"pass"``, ``"delay"``, ``"blackhole"``, ``"cut"``, ``"refuse"`` (``fp.mode``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from concurrent.futures import Future
from typing import Any, Literal

Mode = Literal["pass", "delay", "blackhole", "cut", "refuse"]
CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: SO_LINGER with a zero timeout makes close() abort the connection (RFC 793 3.4)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Link:
    """One client connection and its server connection."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter | None) -> None:
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None and not writer.is_closing():
                _reset(writer)


class FaultProxy:
    """TCP proxy ``listen_host:port`` -> ``target_host:target_port`` with switchable faults."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", listen_port: int = 0):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.mode: Mode = "pass"
        self.delay_seconds = 0.0
        self.accepted = 0
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"faultproxy->{self.target}", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def connections(self) -> int:
        return len(self._links)

    # --- faults (callable from any thread) --------------------------------------------------------------------

    def pass_through(self) -> None:
        self.mode = "pass"
        self._call(self._listen())

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds
        self.mode = "delay"
        self._call(self._listen())

    def blackhole(self) -> None:
        self.mode = "blackhole"
        self._call(self._listen())

    drop = blackhole  # the same fault under its other common name

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        """Switch by name (handy in parametrized tests): pass, delay (with ``delay`` seconds), blackhole, cut, refuse."""
        actions = {"pass": self.pass_through, "blackhole": self.blackhole, "cut": self.cut, "refuse": self.refuse}
        if mode == "delay":
            self.delay(delay)
        else:
            actions[mode]()

    def cut(self) -> None:
        self.mode = "cut"
        self._call(self._listen())
        self._call(self._reset_all())

    def refuse(self) -> None:
        self.mode = "refuse"
        self._call(self._unlisten())
        self._call(self._reset_all())

    # --- the proxy (runs on the proxy's own loop) ---------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "FaultProxy not started"
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(15)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.listen_host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()

    async def _shutdown(self) -> None:
        await self._unlisten()
        for link in list(self._links):
            link.reset()
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "cut":
            _reset(writer)
            return
        link = _Link(writer, None)
        self._links.add(link)
        try:
            if self.mode == "blackhole":
                await self._swallow(reader)
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)
                return
            link.server = server_writer
            loop = asyncio.get_running_loop()
            link.tasks = [
                loop.create_task(self._pump(reader, server_writer)),
                loop.create_task(self._pump(server_reader, writer)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for w in (link.client, link.server):
                if w is not None and not w.is_closing():
                    w.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(CHUNK):
                pass
        except OSError:
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.mode == "delay":
                    await asyncio.sleep(self.delay_seconds)
                if self.mode == "blackhole":
                    continue  # read and discard: the peer sees silence
                if self.mode in ("cut", "refuse"):
                    raise ConnectionResetError("cut by FaultProxy")
                writer.write(data)
                await writer.drain()
            # A clean EOF is passed on as a half-close; the other direction may still be sending.
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (OSError, RuntimeError):
            # A reset or error on one side ends the link: the other side must not wait on it.
            if not writer.is_closing():
                writer.transport.abort()
