"""Server connection pools: one per (database, user, server index), as PgBouncer keeps one per (database, user).

A ``Pool`` lends ``ServerConnection`` objects to client sessions. The hot path (``try_acquire`` / ``release``) is
synchronous: an idle connection is handed over inside the ``data_received`` callback that needed it, and a released
connection goes straight to the longest-waiting client. Only when none is idle does a client wait (``acquire``),
bounded by ``query_wait_timeout``; new connections are opened up to ``pool_size`` (plus ``reserve_pool_size`` for
clients that waited ``reserve_pool_timeout``), within ``max_db_connections`` for the database.

Health (``maintain``, run every second by the plane): idle connections past ``server_idle_timeout`` or
``server_lifetime`` are closed, ``min_pool_size`` is kept, and a connection idle longer than
``server_check_delay`` runs ``server_check_query`` before it is lent again. Connects are retried with exponential
backoff and full jitter (AWS architecture blog, "Exponential Backoff And Jitter") while a retry budget allows it.

``PoolStats`` is what the admin console (SHOW POOLS / STATS) and /metrics read; its field names are PgBouncer's
SHOW POOLS / SHOW STATS column names:

  - ``cl_active`` clients linked to one of this pool's servers, plus (on the primary's pool) logged-in idle
    clients of the (database, user), refreshed every second by the plane; ``cl_waiting`` clients queued now;
  - ``sv_active`` servers lent to clients; ``sv_idle`` idle servers; ``sv_used`` idle servers due a check;
    ``sv_login`` servers being opened; ``maxwait_us`` longest current wait;
  - ``total_xact_count``, ``total_query_count``, ``total_received``, ``total_sent``, ``total_xact_time``,
    ``total_query_time``, ``total_wait_time`` (microseconds, cumulative); ``servers_closed_dead``,
    ``servers_replaced``, ``connect_failures``, ``connect_retries``, ``wait_timeouts``.

``Pool.servers()`` lists the server connections (SHOW SERVERS), and the plane's ``sessions`` set the clients.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus_fast.observe.metrics import BucketHistogram, Metrics
from nexus_fast.postgres.config import PoolSettings, PostgresConfig
from nexus_fast.postgres.server_conn import ServerConnection, ServerError, ServerLogin, open_server

log = logging.getLogger("nexus_fast.postgres.pool")
_monotonic = time.monotonic


@dataclass
class PoolStats:
    database: str
    user: str
    pool_mode: str
    server: str = ""
    role: str = "primary"
    cl_active: int = 0
    cl_waiting: int = 0
    sv_active: int = 0
    sv_idle: int = 0
    sv_used: int = 0
    sv_tested: int = 0
    sv_login: int = 0
    maxwait_us: int = 0
    total_xact_count: int = 0
    total_query_count: int = 0
    total_received: int = 0
    total_sent: int = 0
    total_xact_time: int = 0
    total_query_time: int = 0
    total_wait_time: int = 0
    servers_closed_dead: int = 0
    servers_replaced: int = 0
    connect_failures: int = 0
    connect_retries: int = 0
    wait_timeouts: int = 0


class RetryBudget:
    """Retries allowed as a share of recent attempts (a token bucket: each attempt adds ``ratio`` tokens)."""

    def __init__(self, ratio: float, minimum: float = 3.0):
        self.ratio = ratio
        self.tokens = minimum
        self.cap = max(minimum, 10.0)

    def on_attempt(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PoolMetrics:
    """The pool's latency histograms (exported by the plane's collector) and event counters."""

    def __init__(self, metrics: Metrics | None, labels: tuple[str, str, str]):
        self.enabled = metrics is not None
        self.wait = BucketHistogram()
        self.xact = BucketHistogram()
        self.query = BucketHistogram()
        if metrics is None:
            return
        names = ("database", "user", "server")
        self.dead = metrics.counter("nexus_postgres_servers_closed_dead_total", "Server connections found dead or broken and closed.", names).labels(*labels)
        self.connect_fail = metrics.counter("nexus_postgres_server_connect_failures_total", "Failed server connect attempts.", names).labels(*labels)


class Waiter:
    """A client queued for a connection."""

    __slots__ = ("callback", "deadline", "done", "reserve_timer", "start")

    def __init__(self, callback: Callable[[ServerConnection | None, ServerError | None], None], start: float):
        self.callback = callback
        self.start = start
        self.deadline = 0.0  # query_wait_timeout, as a monotonic time (0 = none); enforced by Pool._wait_timer
        self.done = False
        self.reserve_timer: asyncio.TimerHandle | None = None

    def finish(self) -> None:
        self.done = True
        if self.reserve_timer is not None:
            self.reserve_timer.cancel()


class Pool:
    def __init__(
        self,
        name: str,
        user: str,
        server_index: int,
        role: str,
        login: ServerLogin,
        settings: PoolSettings,
        config: PostgresConfig,
        metrics: Metrics | None = None,
        db_counter: Callable[[], int] | None = None,
        user_counter: Callable[[], int] | None = None,
        max_user_connections: int = 0,
        connect_query: str | None = None,
    ):
        self.name = name
        self.user = user
        self.server_index = server_index
        self.role = role
        self.login = login
        self.settings = settings
        self.config = config
        self.idle: deque[ServerConnection] = deque()
        self.active: set[ServerConnection] = set()
        self.connecting = 0
        self.waiters: deque[Waiter] = deque()
        self.stats = PoolStats(name, user, settings.pool_mode, f"{login.host}:{login.port}", role)
        self.metrics = PoolMetrics(metrics, (name, user, f"{login.host}:{login.port}"))
        self.budget = RetryBudget(config.retry_budget_ratio)
        self.server_params: dict[str, str] | None = None
        # Login greetings built from server_params per client parameter set (see ClientSession._finish_login).
        self.greetings: dict[tuple[tuple[str, str], ...], tuple[Any, ...]] = {}
        self.closed = False
        self.paused = False
        self._db_counter = db_counter
        self._user_counter = user_counter
        self.max_user_connections = max_user_connections
        self.connect_query = connect_query
        self._tasks: set[asyncio.Task[Any]] = set()
        # One timer for query_wait_timeout per pool, not one per waiter: with more clients than connections most
        # transactions wait briefly, and a loop timer made and cancelled for each cost more than the hand-off.
        self._wait_timer: asyncio.TimerHandle | None = None

    # --- views
    def size(self) -> int:
        return len(self.idle) + len(self.active) + self.connecting

    def servers(self) -> list[ServerConnection]:
        return list(self.active) + list(self.idle)

    def refresh_stats(self) -> PoolStats:
        s = self.stats
        s.sv_active = len(self.active)
        s.sv_idle = len(self.idle)
        s.sv_login = self.connecting
        s.cl_waiting = len(self.waiters)
        now = time.monotonic()
        s.maxwait_us = int((now - self.waiters[0].start) * 1e6) if self.waiters else 0
        delay = self.config.server_check_delay
        s.sv_used = sum(1 for c in self.idle if delay and now - c.last_used > delay)
        return s

    # --- lending
    def _usable(self, conn: ServerConnection, now: float) -> bool:
        if conn.closed or conn.dirty:
            return False
        lifetime = self.config.server_lifetime
        if lifetime and now - conn.created_at > lifetime:
            conn.close("server_lifetime")
            return False
        return True

    def try_acquire(self) -> ServerConnection | None:
        """An idle connection ready now, or None (then call ``request``). Part of the per-transaction hot path."""
        if self.paused or self.waiters:
            return None
        idle = self.idle
        if not idle:
            return None
        now = _monotonic()
        config = self.config
        lifetime = config.server_lifetime
        check_delay = config.server_check_delay if config.server_check_query else 0.0
        while idle:
            conn = idle.pop()  # LIFO: the most recently used connection is the warmest
            if conn.closed or conn.dirty:
                continue
            if lifetime and now - conn.created_at > lifetime:
                conn.close("server_lifetime")
                continue
            if check_delay and now - conn.last_used > check_delay:
                idle.append(conn)
                return None  # needs a check first: the queued path (request)
            self.active.add(conn)
            return conn
        return None

    def request(self, callback: Callable[[ServerConnection | None, ServerError | None], None]) -> Waiter:
        """Queue for a connection: ``callback(conn, None)`` when one is lent, ``callback(None, error)`` on failure.

        Callback-based (no task per waiting client) because with more clients than connections this is the
        common path. ``query_wait_timeout`` is a deadline checked by one pool timer (``_expire_waiters``);
        ``reserve_pool_timeout`` is a timer on the waiter.
        """
        loop = asyncio.get_running_loop()
        waiter = Waiter(callback, _monotonic())
        self.waiters.append(waiter)
        cfg = self.config
        if cfg.query_wait_timeout:
            waiter.deadline = waiter.start + cfg.query_wait_timeout
            if self._wait_timer is None:
                self._wait_timer = loop.call_at(waiter.deadline, self._expire_waiters)
        if self.settings.reserve_pool_size and cfg.reserve_pool_timeout:
            waiter.reserve_timer = loop.call_later(cfg.reserve_pool_timeout, self._reserve_due, waiter)
        self._kick()
        return waiter

    def cancel(self, waiter: Waiter) -> None:
        if not waiter.done:
            waiter.finish()
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass

    async def acquire(self) -> ServerConnection:
        """A connection, waiting up to query_wait_timeout; raises ServerError (sqlstate set) on failure."""
        conn = self.try_acquire()
        if conn is not None:
            return conn
        fut: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

        def done(conn: ServerConnection | None, exc: ServerError | None) -> None:
            if fut.done():
                if conn is not None:
                    self.release(conn)
            elif conn is not None:
                fut.set_result(conn)
            else:
                fut.set_exception(exc or ServerError("no server connection"))

        waiter = self.request(done)
        try:
            return await fut
        except asyncio.CancelledError:
            self.cancel(waiter)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result())
            raise

    def _expire_waiters(self) -> None:
        """Fail the waiters past their deadline; re-arm for the earliest remaining one.

        The timer stays armed for the oldest waiter's deadline even if that waiter is served first (it then finds
        nothing due and re-arms): no timer work per waiter. ``call_at`` uses the loop clock, ``time.monotonic``.
        """
        self._wait_timer = None
        now = _monotonic()
        due = [w for w in self.waiters if w.deadline and w.deadline <= now and not w.done]
        for waiter in due:
            self._wait_timeout(waiter)
        pending = [w.deadline for w in self.waiters if w.deadline and not w.done]
        if pending and self._wait_timer is None and not self.closed:
            self._wait_timer = asyncio.get_running_loop().call_at(min(pending), self._expire_waiters)

    def _wait_timeout(self, waiter: Waiter) -> None:
        if waiter.done:
            return
        self.cancel(waiter)
        self.stats.wait_timeouts += 1
        waiter.callback(None, ServerError("query_wait_timeout", "08P01"))

    def _reserve_due(self, waiter: Waiter) -> None:
        waiter.reserve_timer = None
        if not waiter.done and not self.paused and self._may_open(reserve=True):
            self._spawn_open()

    def _kick(self) -> None:
        """Make progress for queued clients: check an idle connection due a check, or open a new one."""
        if self.paused or self.closed or not self.waiters:
            return
        now = time.monotonic()
        while self.idle and self.waiters:
            conn = self.idle.pop()
            if not self._usable(conn, now):
                continue
            self.active.add(conn)
            if self._needs_check(conn, now):
                self._spawn(self._check_then_hand(conn))
            else:
                self.release(conn)
        if len(self.waiters) > self.connecting and self._may_open(reserve=False):
            self._spawn_open()

    def _needs_check(self, conn: ServerConnection, now: float) -> bool:
        delay = self.config.server_check_delay
        return bool(delay and self.config.server_check_query and now - conn.last_used > delay)

    async def _check_then_hand(self, conn: ServerConnection) -> None:
        if await self._checked(conn):
            self.release(conn)
        else:
            self.active.discard(conn)
            self._kick()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_open(self) -> None:
        self.connecting += 1  # counted now, not when the task starts, so size() never over-commits
        self._spawn(self._open_and_hand())

    async def _open_and_hand(self) -> None:
        try:
            conn = await self.open_connection(counted=True)
        except ServerError as exc:
            # Tell the first waiter why instead of letting it wait for query_wait_timeout.
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done:
                    waiter.finish()
                    waiter.callback(None, exc)
                    break
            return
        self.active.add(conn)
        self.release(conn)

    def _may_open(self, reserve: bool) -> bool:
        limit = self.settings.pool_size + (self.settings.reserve_pool_size if reserve else 0)
        if self.size() >= limit:
            return False
        db_max = self.settings.max_db_connections
        if db_max and self._db_counter is not None and self._db_counter() >= db_max:
            return False
        user_max = self.max_user_connections
        if user_max and self._user_counter is not None and self._user_counter() >= user_max:
            return False
        return True

    async def _checked(self, conn: ServerConnection) -> bool:
        delay = self.config.server_check_delay
        query = self.config.server_check_query
        if not (delay and query and time.monotonic() - conn.last_used > delay):
            return True
        try:
            await conn.run_internal(query, self.config.connect_timeout)
        except (TimeoutError, ServerError, OSError):
            self.stats.servers_closed_dead += 1
            if self.metrics.enabled:
                self.metrics.dead.inc()
            conn.close("server_check_query failed")
            return False
        conn.last_used = time.monotonic()
        self.stats.sv_tested += 1
        return True

    async def open_connection(self, counted: bool = False) -> ServerConnection:
        """Connect with retries (exponential backoff, full jitter, retry budget); counted in ``connecting``."""
        if not counted:
            self.connecting += 1
        try:
            attempt = 0
            while True:
                self.budget.on_attempt()
                try:
                    conn = await asyncio.wait_for(open_server(self.login), self.config.connect_timeout or None)
                except (TimeoutError, OSError, ServerError, EOFError, asyncio.IncompleteReadError) as exc:
                    self.stats.connect_failures += 1
                    if self.metrics.enabled:
                        self.metrics.connect_fail.inc()
                    # A server that answered with an auth or database error will answer the same again.
                    permanent = isinstance(exc, ServerError) and exc.fatal_from_server and exc.sqlstate[:2] in ("28", "3D")
                    if permanent or attempt >= self.config.connect_retries or not self.budget.try_spend():
                        if isinstance(exc, ServerError):
                            raise
                        reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
                        raise ServerError(f"could not connect to server {self.login.host}:{self.login.port}: {reason}") from None
                    backoff = min(self.config.retry_backoff_max, self.config.retry_backoff_base * (2**attempt))
                    attempt += 1
                    self.stats.connect_retries += 1
                    await asyncio.sleep(random.uniform(0, backoff))
                    continue
                conn.pool = self
                if self.server_params is None:
                    self.server_params = dict(conn.params)
                connect_query = self.connect_query or self.config.server_connect_query
                if connect_query:
                    try:
                        await conn.run_internal(connect_query, self.config.connect_timeout)
                    except (TimeoutError, ServerError) as exc:
                        conn.close("connect_query failed")
                        raise ServerError(f"server_connect_query failed: {exc}") from None
                return conn
        finally:
            self.connecting -= 1

    def release(self, conn: ServerConnection, now: float = 0.0) -> None:
        """Return a clean connection (status 'I', no request in flight) to the pool or the next waiter.

        ``now`` is a ``time.monotonic()`` reading the caller already made (0: read the clock here).
        """
        self.active.discard(conn)
        conn.session = None
        if conn.closed or conn.dirty:
            conn.close("dirty")
            self._fill_waiters()
            return
        if not now:
            now = _monotonic()
        conn.last_used = now
        lifetime = self.config.server_lifetime
        if self.closed or (lifetime and now - conn.created_at > lifetime):
            conn.close("server_lifetime" if not self.closed else "pool closed")
            self._fill_waiters()
            return
        while self.waiters and not self.paused:
            waiter = self.waiters.popleft()
            if not waiter.done:
                waiter.finish()
                self.active.add(conn)
                self.stats.total_wait_time += int((now - waiter.start) * 1e6)
                self.metrics.wait.observe(now - waiter.start)
                waiter.callback(conn, None)
                return
        self.idle.append(conn)

    def on_server_closed(self, conn: ServerConnection) -> None:
        was_known = conn in self.active or conn in self.idle
        self.active.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        if was_known and conn.close_reason not in ("server_lifetime", "server_idle_timeout", "pool closed", "dirty", "reload"):
            self.stats.servers_closed_dead += 1
            if self.metrics.enabled:
                self.metrics.dead.inc()
        self._fill_waiters()

    def _fill_waiters(self) -> None:
        """A slot freed while clients wait: open a replacement connection for them."""
        if not self.closed and self.waiters:
            self.stats.servers_replaced += 1
            self._kick()

    # --- health
    async def maintain(self) -> None:
        """Close idle connections past server_idle_timeout / server_lifetime; keep min_pool_size open."""
        now = time.monotonic()
        idle_timeout = self.config.server_idle_timeout
        lifetime = self.config.server_lifetime
        for conn in list(self.idle):
            if conn.closed:
                self.on_server_closed(conn)
            elif idle_timeout and now - conn.last_used > idle_timeout and self.size() > self.settings.min_pool_size:
                conn.close("server_idle_timeout")
            elif lifetime and now - conn.created_at > lifetime:
                conn.close("server_lifetime")
        while not self.closed and not self.paused and self.size() < self.settings.min_pool_size:
            try:
                conn = await self.open_connection()
            except ServerError:
                break
            self.active.add(conn)
            self.release(conn)

    async def close(self, reason: str = "pool closed") -> None:
        self.closed = True
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        for conn in list(self.idle):
            conn.close(reason)
        self.idle.clear()
        waiters = list(self.waiters)
        self.waiters.clear()
        for waiter in waiters:
            if not waiter.done:
                waiter.finish()
                waiter.callback(None, ServerError("pool is closing", "57P01"))
        for task in list(self._tasks):
            task.cancel()
