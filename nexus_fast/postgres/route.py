"""The routing seam between a client session and the router (read/write split, later shards).

The session owns the wire; the router owns the decision. For every statement that needs a server connection
(a transaction's first statement in transaction mode, every statement in statement mode, the whole session in
session mode) the session calls::

    decision = router.route(sql, client_state)

and takes a connection from the pool of ``(database, user, decision.server_index)``. ``server_index`` indexes
``DatabaseEntry.server_list()`` of ``nexus_fast.postgres.config``. The router may update ``client_state`` (for
instance ``role_override`` after ``SET nexus.role = ...`` or ``last_write_at`` after a write); the session keeps the
state object per client for the router's use and never interprets those fields itself.

The routing engineer's ``nexus_fast/postgres/router.py`` exports ``Router`` with this constructor and methods; when
that module is absent (or fails to import) ``make_router`` falls back to :class:`PrimaryRouter`, which always picks
the primary.

Extra hooks the session calls (all optional on the router; the session checks with ``getattr``):
  - ``router.on_server_error(server_index, reason)`` when a connect to that server fails (to ban a replica);
  - ``await router.start()`` / ``await router.close()`` from the plane (replica lag monitors);
  - ``router.health() -> list[BackendHealth]`` is not used; the plane probes servers itself.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.config import DatabaseEntry, PostgresConfig

log = logging.getLogger("nexus_fast.postgres.route")

Role = Literal["primary", "replica"]


@dataclass(frozen=True)
class RouteDecision:
    role: Role
    server_index: int  # index into DatabaseEntry.server_list()


@dataclass
class ClientRouteState:
    """Per-client facts the router reads and may update. One object per client session."""

    database: str
    user: str
    client_addr: str = ""
    in_transaction: bool = False  # the client is inside BEGIN ... COMMIT (server said 'T' or 'E')
    pool_mode: str = "transaction"
    role_override: Literal["primary", "replica", "auto"] = "auto"  # SET nexus.role
    last_write_at: float = 0.0  # time.monotonic() of the client's last write (read_your_writes)
    extra: dict[str, Any] = field(default_factory=dict)  # the router's own per-client data


class RouterLike(Protocol):
    def route(self, sql: str, client_state: ClientRouteState) -> RouteDecision: ...


class PrimaryRouter:
    """The fallback: every statement goes to the primary."""

    def __init__(self, database: str, entry: DatabaseEntry, config: PostgresConfig, metrics: Metrics | None = None):
        servers = entry.server_list()
        self._primary = next((i for i, s in enumerate(servers) if s.role == "primary"), 0)

    def route(self, sql: str, client_state: ClientRouteState) -> RouteDecision:
        return RouteDecision("primary", self._primary)


def make_router(database: str, entry: DatabaseEntry, config: PostgresConfig, metrics: Metrics | None) -> Any:
    """``nexus_fast.postgres.router.Router(database, entry, config, metrics)`` if available, else PrimaryRouter."""
    try:
        module = importlib.import_module("nexus_fast.postgres.router")
        router_cls = module.Router
    except (ImportError, AttributeError):
        return PrimaryRouter(database, entry, config, metrics)
    try:
        return router_cls(database, entry, config, metrics)
    except Exception:  # a broken router must not take the data plane down: route everything to the primary
        log.exception("router for %s failed to build; routing to the primary", database)
        return PrimaryRouter(database, entry, config, metrics)
