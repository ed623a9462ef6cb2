"""Read/write routing of one database: which server (primary or which replica) runs a statement.

The seam (``nexus_fast.postgres.route``): the session calls ``router.route(sql, client_state)`` when it needs a
server connection and gets a :class:`RoutingDecision` (a ``RouteDecision`` with more fields). The decision comes
from a chain of rules, each able to settle it or pass; the first that settles wins. The default chain:

1. ``nexus_settings``: a string made only of ``SET nexus.role = ...`` / ``RESET nexus.role`` is answered by the
   proxy (``local_reply`` holds the command tags to send, ``CommandComplete`` + ``ReadyForQuery``); the backend
   never sees it. Mixed with other statements it is refused (``error``): the proxy cannot answer half a string.
2. ``in_transaction``: inside BEGIN ... COMMIT everything stays where the transaction is (the primary).
   ``no_statement``: no SQL to judge (session mode routes a whole session with ``""``; a Bind of a statement the
   session does not know): the primary, the only server that can run whatever follows.
3. ``forced_role``: a ``/* nexus:primary|replica */`` hint, else the client's ``SET nexus.role``. ``primary``
   sends everything to the primary. ``replica`` lifts the "might write" rules (unknown functions) and the
   read-your-writes window, but a statement that certainly writes (DML, DDL, transaction control, locks, SET ...)
   still goes to the primary, since a hot standby would refuse it. ``auto`` is the default behaviour.
   ``session_mode``: in session pooling the first statement picks the server for the whole session, which may
   write later, so a session goes to the primary unless a hint or ``SET nexus.role`` said otherwise.
4. ``no_replicas``: no replica configured or ``read_write_split = false``: the primary.
5. ``writes``: anything the classifier cannot prove read-only (``sql_classify``) goes to the primary; a write
   starts the client's read-your-writes window.
6. ``read_your_writes``: within ``read_your_writes`` seconds of the client's last write, reads stay on the primary.
7. ``replica``: a replica picked by the database's ``load_balancing`` selector among the available ones (not
   banned, lag within ``max_replica_lag``); when none is available the primary serves the read.

Sharding and the query cache slot in as further rules (``Router.rules`` is a plain list; a rule may also fill
``shard`` or ``cache`` in the decision and pass, leaving the server choice to later rules).

Replica availability: ``replica_failed`` (monitor probe failure) and ``on_server_error`` (a session's connect
failure) ban a replica for ``ban_time`` and, while the monitor runs, until a health check passes after that; ``replica_observed`` records its lag, taking it out while lag exceeds
``max_replica_lag`` and putting it back when it catches up. :class:`~nexus_fast.postgres.replica_monitor.ReplicaMonitor`
calls them; ``await router.start()`` / ``await router.close()`` run it.

Hooks the session may call (all optional): ``on_server_error(server_index, reason)`` on a failed connect;
``on_query_done(decision, latency_s)`` when a routed statement or transaction finishes (feeds least_connections and
p2c_ewma); ``note_write(client_state)`` after a transaction that wrote
finishes (restarts the read-your-writes window at its commit rather than its first statement).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nexus_fast.balance.selectors import Selector, create_selector
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.config import DatabaseEntry, PostgresConfig, ServerEntry
from nexus_fast.postgres.replica_monitor import ReplicaMonitor
from nexus_fast.postgres.route import ClientRouteState, RouteDecision
from nexus_fast.postgres.sql_classify import Classification, SqlClassifier
from nexus_fast.server.plane import BackendHealth

log = logging.getLogger("nexus_fast.postgres.router")

# Classification kinds that certainly need the primary, even with a replica hint: a hot standby refuses them.
_CERTAIN_PRIMARY_KINDS = frozenset({"write", "ddl", "begin", "end", "transaction", "set", "lock", "session",
                                    "cursor", "call", "other", "copy"})


@dataclass(frozen=True)
class CachePolicy:
    """Room for the query-cache work: whether and how long a read's result may be cached."""

    ttl_s: float = 0.0
    key_extra: str = ""


@dataclass(frozen=True)
class RoutingDecision(RouteDecision):
    """A :class:`RouteDecision` (role, server_index) plus why, and fields for later routing work."""

    reason: str = ""  # the rule that settled it and its detail: "replica", "writes: function: nextval", ...
    classification: Classification | None = None
    replica_slot: int = -1  # position among the replicas (selector index); -1 for the primary
    local_reply: tuple[str, ...] | None = None  # answer locally with these CommandComplete tags; no server needed
    error: str | None = None  # answer with this ErrorResponse; no server needed
    error_sqlstate: str = "0A000"  # PostgreSQL's code for it: 22023 bad value, 42704 unknown parameter, 0A000 else
    shard: int | None = None  # sharding: which shard's servers (None = unsharded)
    cache: CachePolicy | None = None  # query cache: set when the result may be served from / stored in the cache


@dataclass
class RouteContext:
    """What the rules see for one routing call; rules may fill ``shard`` / ``cache`` and pass."""

    sql: str
    classification: Classification
    client: ClientRouteState
    now: float
    shard: int | None = None
    cache: CachePolicy | None = None


class RoutingRule(Protocol):
    name: str

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None: ...


@dataclass
class ReplicaState:
    """One replica as the router sees it."""

    server_index: int
    address: str
    banned_until: float = 0.0
    ban_reason: str = ""
    lag_s: float | None = None  # last measured replay lag (None: not measured yet)
    lagging: bool = False  # lag above max_replica_lag: out until it catches up
    in_recovery: bool = True
    routed: int = 0  # reads sent here
    needs_probe: bool = False  # banned while a monitor runs: back only after a health check succeeds

    def available(self, now: float) -> bool:
        return now >= self.banned_until and not self.needs_probe and not self.lagging

    def out_reason(self, now: float, max_lag: float) -> str:
        if now < self.banned_until:
            return f"banned for {self.banned_until - now:.1f}s more: {self.ban_reason}"
        if self.needs_probe:
            return f"waiting for a passing health check: {self.ban_reason}"
        if self.lagging:
            return f"replica lag {self.lag_s or 0.0:.1f}s > {max_lag:g}s"
        return ""


def _make_selector(algorithm: str, weights: list[float]) -> Selector:
    return create_selector(algorithm, len(weights), weights)


# ---------------------------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------------------------
class NexusSettingsRule:
    name = "nexus_settings"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        cls = ctx.classification
        if not cls.nexus_settings:
            return None
        if not cls.only_nexus_settings:
            return router.refuse(ctx, "SET nexus.* must be sent as a statement of its own")
        tags: list[str] = []
        for name, value in cls.nexus_settings:
            problem = router.apply_nexus_setting(ctx.client, name, value)
            if problem:
                # As PostgreSQL answers SET: 22023 invalid_parameter_value, 42704 undefined_object (unknown name).
                return router.refuse(ctx, problem, "42704" if problem.startswith("unrecognized") else "22023")
            tags.append("SET" if value is not None else "RESET")
        return router.primary(ctx, "nexus_settings", local_reply=tuple(tags))


class InTransactionRule:
    name = "in_transaction"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        if ctx.classification.resets_session:
            # RESET ALL / DISCARD ALL put every session setting back to its default; nexus.* are session settings.
            ctx.client.role_override = "auto"
            for key in [k for k in ctx.client.extra if k.startswith("nexus.")]:
                del ctx.client.extra[key]
        if ctx.client.in_transaction:
            return router.primary(ctx, "in_transaction")
        return None


class NoStatementRule:
    name = "no_statement"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        # No SQL to judge: session mode routes the whole session with "", a Bind of a statement the session does
        # not know comes with "", and an empty query is harmless anywhere. Only the primary is safe for all three.
        if ctx.classification.statement_count == 0:
            return router.primary(ctx, "no_statement")
        return None


class ForcedRoleRule:
    name = "forced_role"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        role = ctx.classification.role_hint or ctx.client.role_override
        if role == "primary":
            return router.primary(ctx, "forced_role: primary")
        if role == "replica":
            cls = ctx.classification
            if not cls.read_only and ((cls.kind in _CERTAIN_PRIMARY_KINDS and not cls.reason.startswith("function:"))
                                      or cls.locking or cls.begins_transaction):
                router.note_write_if(ctx, cls)
                return router.primary(ctx, f"forced_role: replica refused ({cls.reason})")
            return router.replica_or_primary(ctx, "forced_role: replica")
        return None


class SessionModeRule:
    name = "session_mode"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        # In session mode the first statement picks the server for the whole session, which may write later:
        # only a hint or SET nexus.role (handled before) may send a session to a replica.
        if ctx.client.pool_mode == "session":
            return router.primary(ctx, "session_mode")
        return None


class NoReplicasRule:
    name = "no_replicas"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        if not router.replicas or not router.entry.read_write_split:
            return router.primary(ctx, "no_replicas")
        return None


class WritesRule:
    name = "writes"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        cls = ctx.classification
        if cls.read_only:
            return None
        router.note_write_if(ctx, cls)
        return router.primary(ctx, f"writes: {cls.reason}")


class ReadYourWritesRule:
    name = "read_your_writes"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        window = router.entry.read_your_writes
        last = ctx.client.last_write_at
        if window > 0 and last and ctx.now - last < window:
            return router.primary(ctx, "read_your_writes")
        return None


class ReplicaRule:
    name = "replica"

    def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
        return router.replica_or_primary(ctx, "replica")


DEFAULT_RULES: tuple[RoutingRule, ...] = (
    NexusSettingsRule(),
    InTransactionRule(),
    NoStatementRule(),
    ForcedRoleRule(),
    SessionModeRule(),
    NoReplicasRule(),
    WritesRule(),
    ReadYourWritesRule(),
    ReplicaRule(),
)


# ---------------------------------------------------------------------------------------------------------------
class Router:
    """Routes the statements of one database (see the module docstring for the rules)."""

    def __init__(
        self,
        database: str,
        entry: DatabaseEntry,
        config: PostgresConfig,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rules: Sequence[RoutingRule] = DEFAULT_RULES,
    ) -> None:
        self.database = database
        self.entry = entry
        self.config = config
        self.clock = clock
        self.rules: list[RoutingRule] = list(rules)
        self.servers: list[ServerEntry] = entry.server_list()
        self.primary_index = next((i for i, s in enumerate(self.servers) if s.role == "primary"), 0)
        self.replicas: list[ReplicaState] = [
            ReplicaState(i, s.address) for i, s in enumerate(self.servers) if s.role == "replica" and s.weight > 0
        ]
        self._slot_of = {r.server_index: slot for slot, r in enumerate(self.replicas)}
        self.classifier = SqlClassifier([*config.read_only_functions, *entry.read_only_functions])
        self.selector = (
            _make_selector(entry.load_balancing, [float(self.servers[r.server_index].weight) for r in self.replicas])
            if self.replicas else None
        )
        self.monitor: ReplicaMonitor | None = None
        self._default_rules = list(DEFAULT_RULES)
        self._split = bool(self.replicas) and entry.read_write_split
        self._ryw = entry.read_your_writes
        self._fast_decisions: dict[tuple[int, str], RoutingDecision] = {}
        self._decision_children: dict[tuple[str, str], Any] = {}
        self._healthy: list[bool] = []
        self._any_healthy = False
        self._healthy_until = 0.0
        self._healthy_dirty = True
        self._decisions = self._lag_gauge = self._available_gauge = None
        if metrics is not None:
            self._decisions = metrics.counter(
                "nexus_postgres_route_decisions_total", "Routing decisions by target role and rule.",
                ["database", "role", "rule"])
            self._lag_gauge = metrics.gauge(
                "nexus_postgres_replica_lag_seconds", "Last measured replay lag of each replica.",
                ["database", "server"])
            self._available_gauge = metrics.gauge(
                "nexus_postgres_replica_available", "1 if the replica takes reads now (not banned, not lagging).",
                ["database", "server"])

    # -- the seam ----------------------------------------------------------------------------------------------
    def route(self, sql: str, client_state: ClientRouteState) -> RoutingDecision:
        cls = self.classifier.classify(sql)
        now = self.clock()
        # Fast path for the common case, a plain read with the default rules (same outcome as ReplicaRule):
        # decisions are immutable, so one per (replica, statement) is reused instead of built per call.
        if (
            cls.read_only and cls.statement_count and not cls.hints and not cls.nexus_settings
            and not client_state.in_transaction and client_state.pool_mode != "session"
            and client_state.role_override == "auto" and self._split and self.rules == self._default_rules
            and not (self._ryw and client_state.last_write_at and now - client_state.last_write_at < self._ryw)
        ):
            slot = self.pick_replica(client_state, now)
            if slot >= 0:
                self.replicas[slot].routed += 1
                key = (slot, sql)
                decision = self._fast_decisions.get(key)
                if decision is None:
                    if len(self._fast_decisions) > 4096:
                        self._fast_decisions.clear()
                    decision = RoutingDecision("replica", self.replicas[slot].server_index, reason="replica",
                                               classification=cls, replica_slot=slot)
                    self._fast_decisions[key] = decision
                self._count(decision)
                return decision
        ctx = RouteContext(sql, cls, client_state, now)
        for rule in self.rules:
            decision = rule(self, ctx)
            if decision is not None:
                self._count(decision)
                return decision
        return self.primary(ctx, "default")

    def _count(self, decision: RoutingDecision) -> None:
        if self._decisions is None:
            return
        key = (decision.role, decision.reason)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decisions.labels(self.database, decision.role, decision.reason.split(":", 1)[0])
            self._decision_children[key] = child
        child.inc()

    # -- decisions (used by rules) -------------------------------------------------------------------------------
    def primary(self, ctx: RouteContext, reason: str, local_reply: tuple[str, ...] | None = None) -> RoutingDecision:
        return RoutingDecision("primary", self.primary_index, reason=reason, classification=ctx.classification,
                               local_reply=local_reply, shard=ctx.shard, cache=ctx.cache)

    def refuse(self, ctx: RouteContext, message: str, sqlstate: str = "0A000") -> RoutingDecision:
        return RoutingDecision("primary", self.primary_index, reason="error", classification=ctx.classification,
                               error=message, error_sqlstate=sqlstate, shard=ctx.shard)

    def replica_or_primary(self, ctx: RouteContext, reason: str) -> RoutingDecision:
        slot = self.pick_replica(ctx.client, ctx.now)
        if slot < 0:
            return self.primary(ctx, f"{reason}: no replica available")
        replica = self.replicas[slot]
        replica.routed += 1
        return RoutingDecision("replica", replica.server_index, reason=reason, classification=ctx.classification,
                               replica_slot=slot, shard=ctx.shard, cache=ctx.cache)

    def pick_replica(self, client: ClientRouteState, now: float) -> int:
        if self.selector is None:
            return -1
        if self._healthy_dirty or now >= self._healthy_until:
            self._refresh_healthy(now)
        healthy = self._healthy
        if not self._any_healthy:
            return -1
        key = client.client_addr.encode() if client.client_addr else None
        slot = int(self.selector.select(healthy, key))
        if slot >= 0:
            self.selector.on_start(slot)
        return slot

    def _refresh_healthy(self, now: float) -> None:
        # Availability changes only on monitor/session events (which set _healthy_dirty) and when a ban expires.
        self._healthy = [r.available(now) for r in self.replicas]
        self._any_healthy = any(self._healthy)
        pending = [r.banned_until for r in self.replicas if r.banned_until > now]
        self._healthy_until = min(pending) if pending else float("inf")
        self._healthy_dirty = False

    def note_write_if(self, ctx: RouteContext, cls: Classification) -> None:
        if cls.writes or cls.begins_transaction:
            ctx.client.last_write_at = ctx.now

    def apply_nexus_setting(self, client: ClientRouteState, name: str, value: str | None) -> str:
        """Apply ``SET nexus.<name>``; returns an error message or ""."""
        if name == "role":
            role = (value or "auto").strip().lower()
            if role not in ("primary", "replica", "auto"):
                return f"invalid value for nexus.role: {value!r} (expected primary, replica or auto)"
            client.role_override = role  # type: ignore[assignment]
            return ""
        if name in ("shard_key", "shard"):  # kept for the sharding rules; routing ignores it today
            if value is None:
                client.extra.pop(f"nexus.{name}", None)
            else:
                client.extra[f"nexus.{name}"] = value
            return ""
        return f"unrecognized configuration parameter \"nexus.{name}\""

    # -- hooks from the session --------------------------------------------------------------------------------
    def on_query_done(self, decision: RouteDecision, latency_s: float) -> None:
        slot = getattr(decision, "replica_slot", -1)
        if slot >= 0 and self.selector is not None:
            self.selector.on_finish(slot, latency_s)

    def note_write(self, client_state: ClientRouteState) -> None:
        client_state.last_write_at = self.clock()

    def on_server_error(self, server_index: int, reason: str) -> None:
        """A session failed to reach ``server_index``: a replica is banned for ``ban_time``."""
        self.ban(server_index, reason)

    # -- replica state (monitor and session feed these) --------------------------------------------------------
    def ban(self, server_index: int, reason: str) -> None:
        slot = self._slot_of.get(server_index)
        if slot is None:
            return
        replica = self.replicas[slot]
        now = self.clock()
        was_banned = now < replica.banned_until
        # A replica that keeps failing stays out ban_time past its latest failure, so it does not flap back in
        # between two monitor polls while still down.
        replica.banned_until = now + self.entry.ban_time
        replica.ban_reason = reason
        # With a monitor running, ban_time passing is not enough: a replica still down when its ban ends would
        # take reads (and fail them) until the next poll. It returns after a health check passes (PgCat returns
        # it on expiry alone; without a monitor, so do we).
        replica.needs_probe = self.monitor is not None
        self._export(replica)
        if was_banned:
            return
        log.warning("replica %s of %s banned for %gs: %s", replica.address, self.database, self.entry.ban_time, reason)

    def replica_failed(self, server_index: int, reason: str) -> None:
        self.ban(server_index, reason)

    def replica_observed(self, server_index: int, lag_s: float, in_recovery: bool) -> None:
        slot = self._slot_of.get(server_index)
        if slot is None:
            return
        replica = self.replicas[slot]
        replica.lag_s = lag_s
        replica.in_recovery = in_recovery
        replica.needs_probe = False
        lagging = lag_s > self.entry.max_replica_lag
        if lagging != replica.lagging:
            log.warning("replica %s of %s %s (lag %.1fs, bound %gs)", replica.address, self.database,
                        "taken out" if lagging else "back in", lag_s, self.entry.max_replica_lag)
        replica.lagging = lagging
        self._export(replica)

    def _export(self, replica: ReplicaState) -> None:
        self._healthy_dirty = True
        if self._lag_gauge is not None and replica.lag_s is not None:
            self._lag_gauge.labels(self.database, replica.address).set(replica.lag_s)
        if self._available_gauge is not None:
            self._available_gauge.labels(self.database, replica.address).set(int(replica.available(self.clock())))

    def health(self) -> list[BackendHealth]:
        """Each replica's routing state (for /health and the admin console)."""
        now = self.clock()
        out = []
        for replica in self.replicas:
            reason = replica.out_reason(now, self.entry.max_replica_lag)
            if not reason and not replica.in_recovery:
                reason = "not in recovery (promoted?)"
            out.append(BackendHealth("postgres", f"{self.database}/replica", replica.address,
                                     replica.available(now), reason))
        return out

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.replicas or not self.entry.read_write_split or self.monitor is not None:
            return
        self.monitor = ReplicaMonitor(
            self, self.primary_index, [r.server_index for r in self.replicas], self._connect,
            interval=self.config.replica_check_interval, timeout=self.config.replica_check_timeout,
            clock=self.clock,
        )
        await self.monitor.start()

    async def close(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            await monitor.close()

    def monitor_login(self) -> tuple[str, str | None]:
        """The login the replica monitor uses: the one the plane's health probes use, with a plain password.

        The user is the database's forced ``user``, else ``auth_user``, else the first ``[postgres.users]`` entry,
        else ``postgres``; the password is the plain one configured for that user (``password`` of the database,
        ``auth_password``, the user's entry, or the ``auth_file`` line). md5 and SCRAM secrets cannot log in.
        """
        cfg, entry = self.config, self.entry
        if entry.user:
            return entry.user, entry.password.get_secret_value() if entry.password is not None else None
        user = cfg.auth_user or next(iter(cfg.users), "postgres")
        if cfg.auth_user and cfg.auth_password is not None:
            return user, cfg.auth_password.get_secret_value()
        candidates: list[str] = []
        configured = cfg.users.get(user)
        if configured is not None and configured.password is not None:
            candidates.append(configured.password.get_secret_value())
        if cfg.auth_file:
            try:
                from nexus_fast.postgres.auth import load_auth_file

                found = load_auth_file(cfg.auth_file).get(user)
            except (OSError, ValueError):
                found = None
            if found is not None:
                candidates.append(found)
        for secret in candidates:
            if not secret.startswith(("md5", "SCRAM-SHA-256$")):
                return user, secret or None
        return user, None

    async def _connect(self, server_index: int) -> Any:
        import asyncpg

        server = self.servers[server_index]
        user, password = self.monitor_login()
        ssl: Any = False if self.config.server_tls_sslmode in ("disable", "allow") else self.config.server_tls_sslmode
        return await asyncpg.connect(
            host=server.host, port=server.port, user=user, password=password,
            database=self.entry.backend_dbname(self.database), ssl=ssl, timeout=self.config.replica_check_timeout,
            statement_cache_size=0, server_settings={"application_name": "nexus-fast replica monitor"},
        )


__all__ = [
    "DEFAULT_RULES",
    "CachePolicy",
    "ReplicaState",
    "RouteContext",
    "Router",
    "RoutingDecision",
    "RoutingRule",
]

