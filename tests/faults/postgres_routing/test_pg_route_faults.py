"""Replica failures under a read load: reads move to the primary within a second or two and come back later."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from nexus_fast._testing.postgres import PostgresCluster
from nexus_fast._testing.postgres_fixtures import routed_section, running_plane


class Reader:
    """A client reading in a loop through the proxy, reconnecting after errors; records where each read ran."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.log: list[tuple[float, str]] = []  # (time, "replica" | "primary" | "error")
        self._stop = False

    async def run(self) -> None:
        conn: psycopg.AsyncConnection | None = None
        while not self._stop:
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=3",
                        autocommit=True)
                cur = await conn.execute("SELECT pg_is_in_recovery()")
                row = await cur.fetchone()
                self.log.append((time.monotonic(), "replica" if row and row[0] else "primary"))
            except psycopg.Error:
                self.log.append((time.monotonic(), "error"))
                if conn is not None:
                    await conn.close()
                conn = None
            await asyncio.sleep(0.02)
        if conn is not None:
            await conn.close()

    def stop(self) -> None:
        self._stop = True

    def since(self, t: float) -> list[str]:
        return [where for at, where in self.log if at >= t]


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_replica_down_under_load_reads_continue_on_the_primary(pg_cluster: PostgresCluster, how: str) -> None:
    async with running_plane(routed_section(pg_cluster, ban_time="1s")) as plane:
        readers = [Reader(plane.port) for _ in range(3)]
        tasks = [asyncio.create_task(r.run()) for r in readers]
        try:
            await asyncio.sleep(0.5)
            assert all(r.log and r.log[-1][1] == "replica" for r in readers)
            down_at = time.monotonic()
            if how == "stop":
                await asyncio.to_thread(pg_cluster.standby.stop, "immediate")
            else:
                await asyncio.to_thread(pg_cluster.standby.kill)
            await asyncio.sleep(2.5)
            for reader in readers:
                after = reader.since(down_at)
                # Within 2 s every reader is served by the primary, and from then on without errors.
                settled = [where for at, where in reader.log if at >= down_at + 2.0]
                assert settled and set(settled) == {"primary"}, after
            up_at = time.monotonic()
            await asyncio.to_thread(pg_cluster.standby.start)
            await asyncio.sleep(0.1)
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline and not all(r.log[-1][1] == "replica" for r in readers):
                await asyncio.sleep(0.1)
            for reader in readers:
                assert reader.log[-1][1] == "replica", reader.since(up_at)[-10:]
                assert "error" not in reader.since(up_at)  # coming back costs no client an error
        finally:
            for reader in readers:
                reader.stop()
            await asyncio.gather(*tasks)


async def test_all_replicas_out_means_reads_on_the_primary_without_errors(pg_cluster: PostgresCluster) -> None:
    async with running_plane(routed_section(pg_cluster, max_replica_lag="500ms")) as plane:
        reader = Reader(plane.port)
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(pg_cluster.pause_replay)
            await asyncio.to_thread(pg_cluster.primary.execute, "CREATE TABLE IF NOT EXISTS lag_fault (x int)")
            paused_at = time.monotonic()
            await asyncio.sleep(3.0)
            assert reader.log[-1][1] == "primary"
            assert "error" not in reader.since(paused_at)  # lag moves reads without failing any
            await asyncio.to_thread(pg_cluster.resume_replay)
            await asyncio.sleep(1.0)
            assert reader.log[-1][1] == "replica"
        finally:
            reader.stop()
            await task


async def test_primary_down_reads_continue_on_the_replica_and_writes_fail_fast(pg_cluster: PostgresCluster) -> None:
    async with running_plane(routed_section(pg_cluster)) as plane:
        reader = Reader(plane.port)
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(pg_cluster.primary.stop, "immediate")
            down_at = time.monotonic()
            await asyncio.sleep(1.5)
            # the replica still answers reads (its lag is judged from what it received, the primary being gone)
            assert set(reader.since(down_at)) == {"replica"}
            writer = await psycopg.AsyncConnection.connect(
                f"host=127.0.0.1 port={plane.port} user=postgres dbname=postgres connect_timeout=5", autocommit=True)
            try:
                started = time.monotonic()
                with pytest.raises(psycopg.OperationalError):
                    await writer.execute("CREATE TABLE IF NOT EXISTS during_outage (x int)")
                assert time.monotonic() - started < 5.0  # an error, not a hang
            finally:
                await writer.close()
            await asyncio.to_thread(pg_cluster.primary.start)
            assert await _write_works_within(plane.port, 5.0)  # the pool reconnects to the restarted primary
            # That write reaches the standby once its WAL receiver reconnects; until then the standby is behind by
            # more than max_replica_lag and reads go to the primary. Then they return to the replica.
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline and reader.log[-1][1] != "replica":
                await asyncio.sleep(0.1)
            assert reader.log[-1][1] == "replica"
        finally:
            reader.stop()
            await task


async def _write_works_within(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = await psycopg.AsyncConnection.connect(
                f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3", autocommit=True)
        except psycopg.OperationalError:
            await asyncio.sleep(0.1)
            continue
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS after_outage (x int)")
            cur = await conn.execute("INSERT INTO after_outage VALUES (1) RETURNING pg_is_in_recovery()")
            return await cur.fetchone() == (False,)
        except psycopg.OperationalError:
            await asyncio.sleep(0.1)
        finally:
            await conn.close()
    return False
