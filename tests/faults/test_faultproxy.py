"""The fault-injecting TCP proxy: pass, delay, blackhole, cut and refuse, switched at runtime, sync and async."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from nexus_fast._testing.faultproxy import FaultProxy
from nexus_fast._testing.ports import system_redis_address


class EchoServer:
    """A plain threaded TCP echo server as the proxy's target."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not on Linux)
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_pass_through_forwards_both_ways(echo) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp, socket.create_connection(fp.address, timeout=5) as sock:
        big = bytes(range(256)) * 2000
        assert roundtrip(sock, b"hello") == b"hello"
        assert roundtrip(sock, big) == big
        assert fp.accepted == 1 and fp.connections == 1


def test_delay_adds_latency_to_open_connections(echo) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp, socket.create_connection(fp.address, timeout=5) as sock:
        started = time.monotonic()
        roundtrip(sock, b"x")
        fast = time.monotonic() - started
        fp.delay(0.3)
        started = time.monotonic()
        assert roundtrip(sock, b"y") == b"y"
        slow = time.monotonic() - started
        assert slow >= 0.55 > fast  # 300 ms each way
        fp.pass_through()
        started = time.monotonic()
        roundtrip(sock, b"z")
        assert time.monotonic() - started < 0.45


def test_blackhole_swallows_traffic_until_pass_through(echo) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp:
        fp.blackhole()
        with socket.create_connection(fp.address, timeout=0.5) as sock:
            sock.sendall(b"lost")
            with pytest.raises(TimeoutError):
                sock.recv(10)
        fp.pass_through()
        with socket.create_connection(fp.address, timeout=5) as sock:
            assert roundtrip(sock, b"back") == b"back"


def test_cut_resets_open_and_new_connections(echo) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp:
        sock = socket.create_connection(fp.address, timeout=5)
        assert roundtrip(sock, b"a") == b"a"
        fp.cut()
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"b")
            sock.recv(10)
            sock.sendall(b"c")  # the RST may surface on the next call
            sock.recv(10)
        sock.close()
        # A new connection is reset on accept: the RST may even beat create_connection's return.
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(fp.address, timeout=5) as again:
                again.sendall(b"d")
                again.recv(10)
                again.sendall(b"e")
                again.recv(10)
        assert fp.connections == 0


def test_refuse_closes_the_listener_and_pass_through_reopens_it(echo) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp:
        fp.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(fp.address, timeout=2)
        fp.pass_through()
        with socket.create_connection(fp.address, timeout=5) as sock:
            assert roundtrip(sock, b"ok") == b"ok"


async def test_usable_from_async_code_in_front_of_a_real_redis() -> None:
    with FaultProxy(*system_redis_address()) as fp:
        reader, writer = await asyncio.open_connection(*fp.address)
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
        fp.blackhole()
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.5)
        fp.cut()
        with pytest.raises(ConnectionResetError):  # an RST, not a clean close
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionResetError:
            pass


@pytest.mark.parametrize(("mode", "outcome"), [("pass", "echo"), ("delay", "echo"), ("blackhole", "timeout"),
                                               ("cut", "reset"), ("refuse", "refused")])
def test_set_mode_by_name(echo, mode: str, outcome: str) -> None:
    with FaultProxy("127.0.0.1", echo.port) as fp:
        fp.set_mode(mode, delay=0.05)  # type: ignore[arg-type]
        assert fp.mode == mode
        try:
            with socket.create_connection(fp.address, timeout=0.5) as sock:
                sock.sendall(b"m")
                got = sock.recv(10)
                result = "echo" if got == b"m" else "reset"
        except ConnectionRefusedError:
            result = "refused"
        except ConnectionResetError:
            result = "reset"
        except TimeoutError:
            result = "timeout"
        assert result == outcome
