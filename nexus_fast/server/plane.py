"""The contract between the process shell and a data plane (PostgreSQL, Redis).

The shell (``nexus_fast.server``) builds one plane per configured section in each worker, starts it, routes
reload and shutdown to it, and asks it for health. A plane owns its listeners, sessions, routers and pools; the
shell never reaches inside.

Optional, set by the shell on every plane after ``create_plane``: ``admin_reload`` and ``admin_shutdown``, async
callables without arguments that a plane's own admin surface (the PgBouncer console's RELOAD and SHUTDOWN) awaits
to reload the config file or drain the whole process (every worker, through the supervisor when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics


@dataclass(frozen=True)
class BackendHealth:
    """One backend's state as /health reports it."""

    plane: str  # "postgres" | "redis"
    name: str  # pool/database name and role, e.g. "appdb/primary" or "cache/node2"
    address: str  # host:port
    healthy: bool
    reason: str = ""  # why unhealthy, e.g. "connect refused", "replica lag 12.0s > 5s"
    latency_ms: float | None = None


class Plane(Protocol):
    name: str

    async def start(self) -> None:
        """Bind listeners (with SO_REUSEPORT, so sibling workers share them) and begin serving."""

    async def reload(self, config: NexusConfig) -> None:
        """Apply a validated config; unchanged pools keep their connections. Raise to refuse (old config stays)."""

    def stop_accepting(self) -> None:
        """Close listeners; existing sessions continue."""

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for in-flight requests to finish, then close every session."""

    async def close(self) -> None:
        """Release every resource (server connections, background tasks)."""

    async def check_health(self, timeout: float) -> list[BackendHealth]:
        """Probe every configured backend now (a real connect and a trivial command)."""


class PlaneFactory(Protocol):
    def __call__(self, config: NexusConfig, metrics: Metrics) -> Plane: ...
