"""Idle connection memory: hold N logged-in client connections open against a proxy and measure what they cost it.

Each PostgreSQL client completes a real startup (StartupMessage protocol 3.0, then the server's messages up to the
first ReadyForQuery; PostgreSQL protocol docs, "Start-up"), so the proxy holds a fully logged-in client, not a
half-open socket. Each Redis client sends PING and waits for ``+PONG``. The cost is the rise of the proxy's
resident memory (its whole process tree) from before the connections to while they are all held, divided by N.
The connections are opened a few hundred at a time and closed at the end.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from bench.processes import tree_rss_bytes

PROTOCOL_3_0 = 196608


def startup_message(user: str, database: str) -> bytes:
    """A StartupMessage: Int32 length, Int32 protocol 3.0, then name/value C strings ending in an empty string."""
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in (("user", user), ("database", database), ("application_name", "nexus-bench-idle")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


class LoginError(RuntimeError):
    pass


async def postgres_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str,
                         database: str) -> None:
    """Complete a trust-authenticated startup; raises LoginError on ErrorResponse or a password request."""
    writer.write(startup_message(user, database))
    await writer.drain()
    while True:
        header = await reader.readexactly(5)
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        body = await reader.readexactly(length - 4)
        if kind == b"E":
            raise LoginError(body.replace(b"\0", b" ").decode(errors="replace").strip())
        if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise LoginError("the target asked for a password; the benchmark expects trust authentication")
        if kind == b"Z":
            return


async def redis_ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"*1\r\n$4\r\nPING\r\n")
    await writer.drain()
    line = await reader.readline()
    if not line.startswith(b"+PONG"):
        raise LoginError(f"PING answered {line!r}")


Greeting = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class IdleResult:
    connections: int
    rss_before_bytes: int
    rss_held_bytes: int
    open_seconds: float
    errors: int
    first_error: str | None

    @property
    def bytes_per_connection(self) -> float | None:
        if self.connections == 0:
            return None
        return (self.rss_held_bytes - self.rss_before_bytes) / self.connections

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "bytes_per_connection": self.bytes_per_connection}


async def _hold(
    host: str, port: int, count: int, greet: Greeting, rss: Callable[[], int], batch: int, settle_s: float,
    timeout_s: float,
) -> IdleResult:
    held: list[asyncio.StreamWriter] = []
    errors: list[str] = []
    semaphore = asyncio.Semaphore(batch)

    async def one() -> None:
        async with semaphore:
            opened: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                opened = writer
                await asyncio.wait_for(greet(reader, writer), timeout_s)
                held.append(writer)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, LoginError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if opened is not None:
                    opened.close()

    # One client first, not counted: it makes the proxy open what it opens once (PgBouncer's first server
    # connection, a worker's lazily built state), so the figure is the cost of each further client.
    warm_reader, warm_writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        await asyncio.wait_for(greet(warm_reader, warm_writer), timeout_s)
    except BaseException:
        warm_writer.close()
        raise
    held.append(warm_writer)
    await asyncio.sleep(settle_s)
    before = rss()
    started = time.monotonic()
    try:
        await asyncio.gather(*(one() for _ in range(count)))
        opened = time.monotonic() - started
        await asyncio.sleep(settle_s)
        during = rss()
    finally:
        for writer in held:
            writer.close()
        for writer in held:
            try:
                await writer.wait_closed()
            except OSError:
                pass
    return IdleResult(len(held) - 1, before, during, opened, len(errors), errors[0] if errors else None)


def hold_idle_connections(
    *, host: str, port: int, pid: int, count: int, protocol: str, user: str = "postgres",
    database: str = "postgres", batch: int = 200, settle_s: float = 1.0, timeout_s: float = 10.0,
) -> IdleResult:
    """Open ``count`` idle clients (``protocol`` "postgres" or "redis") against host:port; RSS of ``pid``'s tree."""
    greet: Greeting
    if protocol == "postgres":
        def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
            return postgres_login(reader, writer, user, database)
    elif protocol == "redis":
        greet = redis_ping
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return asyncio.run(_hold(host, port, count, greet, lambda: tree_rss_bytes(pid), batch, settle_s, timeout_s))
