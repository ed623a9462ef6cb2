"""query_wait_timeout enforced by one timer per pool: each waiter fails at its own deadline, served ones never."""

from __future__ import annotations

import asyncio
import time

from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.postgres.pool import Pool
from nexus_fast.postgres.server_conn import ServerConnection, ServerLogin
from tests.unit.postgres.test_pg_forward import RecordingTransport


def make_pool(timeout: str) -> Pool:
    config = PostgresConfig(query_wait_timeout=timeout, databases={"*": {"servers": [{"host": "127.0.0.1", "port": 5432}]}})
    login = ServerLogin("127.0.0.1", 5432, "u", "db")
    pool = Pool("db", "u", 0, "primary", login, config.pool_settings("db", "u"), config)
    pool.paused = True  # nothing is lent or opened by itself: the test hands connections over
    return pool


async def test_each_waiter_times_out_at_its_own_deadline():
    pool = make_pool("200ms")
    results: dict[str, tuple[float, str]] = {}
    start = time.monotonic()

    def recorder(name: str):
        return lambda conn, exc: results.__setitem__(name, (time.monotonic() - start, getattr(exc, "args", ("",))[0] if exc else "lent"))

    pool.request(recorder("a"))
    await asyncio.sleep(0.1)
    pool.request(recorder("b"))
    await asyncio.sleep(0.15)
    assert set(results) == {"a"} and results["a"][1] == "query_wait_timeout"
    assert 0.19 <= results["a"][0] < 0.25
    await asyncio.sleep(0.1)
    assert results["b"][1] == "query_wait_timeout" and 0.29 <= results["b"][0] < 0.36
    assert pool.stats.wait_timeouts == 2 and not pool.waiters and pool._wait_timer is None


async def test_a_served_waiter_never_times_out_and_the_next_one_still_does():
    pool = make_pool("150ms")
    outcomes: list[str] = []
    conn = ServerConnection(RecordingTransport(), pool.login, {}, 1, 2)
    conn.pool = pool
    pool.request(lambda c, exc: outcomes.append("lent" if c is conn else f"a:{exc}"))
    await asyncio.sleep(0.05)
    pool.request(lambda c, exc: outcomes.append(f"b:{exc}"))
    pool.paused = False
    pool.active.add(conn)
    pool.release(conn)  # goes to the first waiter
    assert outcomes == ["lent"] and len(pool.waiters) == 1
    await asyncio.sleep(0.12)  # the timer armed for the first waiter's deadline fires, finds nothing due
    assert outcomes == ["lent"] and pool._wait_timer is not None
    await asyncio.sleep(0.1)
    assert outcomes == ["lent", "b:query_wait_timeout"] and pool.stats.wait_timeouts == 1
    await pool.close()


async def test_closing_the_pool_stops_its_timer():
    pool = make_pool("10s")
    errors: list[str] = []
    pool.request(lambda c, exc: errors.append(str(exc)))
    assert pool._wait_timer is not None
    await pool.close()
    assert pool._wait_timer is None and errors == ["pool is closing"]
