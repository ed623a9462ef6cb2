"""Replica health and replay lag, polled in the background and fed to the router.

Every ``replica_check_interval`` the monitor asks the primary for its WAL position and each replica for its
recovery state, then tells the router (``Router.replica_observed`` / ``Router.replica_failed``). A replica that
cannot be reached (connect or query error, or slower than the timeout) is banned for ``ban_time``; a replica
whose replay lag exceeds ``max_replica_lag`` is taken out of reads until it catches up.

How lag is measured (PostgreSQL 15 docs, section 28.2 "Monitoring" of log-shipping standbys, and the functions of
9.27.4 "Recovery Control"): the usual ``now() - pg_last_xact_replay_timestamp()`` is the age of the last commit the
standby replayed. On a busy primary that is the replay delay; on an idle primary it only grows although nothing is
pending, so it is used only when the standby is actually behind:
- replay position at or past the primary's ``pg_current_wal_lsn()`` read just before the probe: lag 0 (caught up);
- primary unreachable, and ``pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()``: lag 0 (nothing pending that
  we can see);
- otherwise the replay-timestamp age; if the standby has replayed no transaction since it started (timestamp NULL),
  how long we have seen it behind.
``pg_is_in_recovery()`` false means the node was promoted: it serves reads with lag 0 and the health reason says so.

The arithmetic is the sans-IO :func:`estimate_lag`, unit-tested with plain numbers; :class:`ReplicaMonitor` is the
thin asyncio part (asyncpg connections kept open between polls, re-made on error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nexus_fast.tasks import cancel_and_wait

log = logging.getLogger("nexus_fast.postgres.replica_monitor")

REPLICA_PROBE_SQL = (
    "SELECT pg_is_in_recovery(), "
    "pg_last_wal_receive_lsn()::text, "
    "pg_last_wal_replay_lsn()::text, "
    "extract(epoch FROM (now() - pg_last_xact_replay_timestamp()))::float8"
)
# On a standby pg_current_wal_lsn() raises; the CASE keeps the primary probe valid if the "primary" is one.
PRIMARY_PROBE_SQL = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END"
)


def parse_lsn(text: str | None) -> int | None:
    """``'16/B374D848'`` -> 64-bit integer (pg_lsn's text form is two hex halves); None stays None."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class ReplicaSample:
    """What one probe of a replica returned."""

    in_recovery: bool
    receive_lsn: int | None
    replay_lsn: int | None
    replay_age: float | None  # now() - pg_last_xact_replay_timestamp(), seconds; None if nothing replayed yet


def caught_up(sample: ReplicaSample, primary_lsn: int | None) -> bool:
    """Nothing to replay that we can see: promoted, at the primary's position, or (primary unknown) at what it got."""
    if not sample.in_recovery:
        return True
    replay = sample.replay_lsn
    if replay is None:
        return False
    if primary_lsn is not None:
        return replay >= primary_lsn
    return sample.receive_lsn is None or replay >= sample.receive_lsn


def estimate_lag(sample: ReplicaSample, primary_lsn: int | None, behind_for: float) -> float:
    """Replay lag in seconds by the rules in the module docstring (``behind_for``: how long seen behind)."""
    if caught_up(sample, primary_lsn):
        return 0.0
    if sample.replay_age is not None:
        return max(0.0, sample.replay_age)
    return max(0.0, behind_for)


class LagSink(Protocol):
    """What the monitor reports to (the router)."""

    def replica_observed(self, server_index: int, lag_s: float, in_recovery: bool) -> None: ...

    def replica_failed(self, server_index: int, reason: str) -> None: ...


Connector = Callable[[int], Awaitable[Any]]  # server index -> an asyncpg-like connection (fetchrow, close)


class ReplicaMonitor:
    """Background poller of one database's primary and replicas."""

    def __init__(
        self,
        sink: LagSink,
        primary_index: int,
        replica_indexes: Sequence[int],
        connect: Connector,
        interval: float = 1.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._primary = primary_index
        self._replicas = list(replica_indexes)
        self._connect = connect
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._conns: dict[int, Any] = {}
        self._behind_since: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.last_lag: dict[int, float] = {}

    async def start(self) -> None:
        """Poll once now (so the first routing decisions already know the replicas), then every interval."""
        if self._task is not None or not self._replicas:
            return
        await self.poll_once()
        self._task = asyncio.create_task(self._run(), name="nexus-replica-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for index in list(self._conns):
            await self._drop(index)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a monitor bug must not stop monitoring; the next poll tries again
                log.exception("replica monitor poll failed")

    async def poll_once(self) -> None:
        primary_lsn = await self._primary_lsn()
        await asyncio.gather(*(self._probe(index, primary_lsn) for index in self._replicas))
        self.polls += 1

    async def _primary_lsn(self) -> int | None:
        try:
            row = await self._query(self._primary, PRIMARY_PROBE_SQL)
        except Exception as exc:
            log.debug("primary probe failed: %s", exc)
            return None
        return parse_lsn(row[0]) if row else None

    async def _probe(self, index: int, primary_lsn: int | None) -> None:
        try:
            row = await self._query(index, REPLICA_PROBE_SQL)
        except Exception as exc:
            self._behind_since.pop(index, None)
            self._sink.replica_failed(index, _describe(exc))
            return
        sample = ReplicaSample(bool(row[0]), parse_lsn(row[1]), parse_lsn(row[2]),
                               None if row[3] is None or math.isnan(row[3]) else float(row[3]))
        now = self._clock()
        if caught_up(sample, primary_lsn):
            self._behind_since.pop(index, None)
            since = now
        else:
            since = self._behind_since.setdefault(index, now)
        lag = estimate_lag(sample, primary_lsn, now - since)
        self.last_lag[index] = lag
        self._sink.replica_observed(index, lag, sample.in_recovery)

    async def _query(self, index: int, sql: str) -> Any:
        conn: Any = self._conns.get(index)
        try:
            if conn is None or conn.is_closed():
                conn = await asyncio.wait_for(self._connect(index), self.timeout)
                self._conns[index] = conn
            return await asyncio.wait_for(conn.fetchrow(sql), self.timeout)
        except BaseException:
            await self._drop(index)
            raise

    async def _drop(self, index: int) -> None:
        conn = self._conns.pop(index, None)
        if conn is None:
            return
        # terminate(): no goodbye round trip to a server that may be gone.
        with contextlib.suppress(Exception):
            conn.terminate()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "health check timed out"
    text = str(exc) or type(exc).__name__
    return f"health check failed: {text[:200]}"
