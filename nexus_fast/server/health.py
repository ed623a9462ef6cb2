"""Backend health for /health: a background task probes every backend and caches the answer.

Health endpoints are scraped often (load balancers, Kubernetes probes, Prometheus); probing the backends on every
request would multiply backend connections by the scrape rate. Instead one task per worker probes every
``admin.health_check_interval`` through each plane's ``check_health(timeout)`` and the endpoints read the cache.
A probe that raises or exceeds ``admin.health_check_timeout`` marks that plane's backends unhealthy with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from nexus_fast.observe.logging import get_logger
from nexus_fast.observe.metrics import Metrics
from nexus_fast.server.plane import BackendHealth
from nexus_fast.tasks import cancel_and_wait

Probe = Callable[[float], Awaitable[list[BackendHealth]]]
log = get_logger("health")


@dataclass
class PlaneHealth:
    """The last probe of one plane's backends."""

    plane: str
    backends: list[BackendHealth] = field(default_factory=list)
    checked_at: float | None = None  # wall-clock time of the last completed probe
    error: str = ""  # the probe itself failed (timeout, exception): every backend counts as down

    @property
    def healthy(self) -> bool:
        if self.checked_at is None or self.error:
            return False
        return all(b.healthy for b in self.backends)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "plane": self.plane,
            "status": "up" if self.healthy else "down",
            "checked_at": self.checked_at,
            "backends": [asdict(b) for b in self.backends],
        }
        if self.checked_at is None:
            out["reason"] = "not checked yet"
        elif self.error:
            out["reason"] = self.error
        return out


class HealthMonitor:
    """Probes every plane periodically and answers from the cache."""

    def __init__(self, probes: dict[str, Probe], interval: float, timeout: float, metrics: Metrics | None = None):
        self.probes = dict(probes)
        self.interval = interval
        self.timeout = timeout
        self.state = {name: PlaneHealth(name) for name in probes}
        self._task: asyncio.Task[None] | None = None
        self._series: dict[str, set[tuple[str, str, str]]] = {}  # plane -> label sets of nexus_backend_up
        self._gauge = (
            metrics.gauge("nexus_backend_up", "1 if the last health probe of the backend succeeded.",
                          ["plane", "backend", "address"])
            if metrics is not None else None
        )

    def configure(self, interval: float, timeout: float) -> None:
        """Apply reloaded ``admin.health_check_interval`` / ``admin.health_check_timeout``."""
        self.interval, self.timeout = interval, timeout

    async def check_plane(self, name: str) -> PlaneHealth:
        probe = self.probes[name]
        previous = self.state[name]
        try:
            # The plane's own timeout applies per backend; this outer bound catches a probe that ignores it.
            backends = await asyncio.wait_for(probe(self.timeout), self.timeout + 1.0)
            result = PlaneHealth(name, list(backends), time.time())
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            result = PlaneHealth(name, previous.backends, time.time(), f"health probe timed out after {self.timeout}s")
        except Exception as exc:
            result = PlaneHealth(name, previous.backends, time.time(), f"health probe failed: {exc!r}")
        if result.healthy != previous.healthy or previous.checked_at is None:
            log.info("health_changed", plane=name, status="up" if result.healthy else "down",
                     reasons="; ".join(_reasons(result)))
        self.state[name] = result
        if self._gauge is not None:
            current = set()
            for backend in result.backends:
                up = backend.healthy and not result.error
                self._gauge.labels(name, backend.name, backend.address).set(1 if up else 0)
                current.add((name, backend.name, backend.address))
            for gone in self._series.get(name, set()) - current:  # a backend a reload removed
                self._gauge.remove(*gone)
            self._series[name] = current
        return result

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check_plane(name) for name in self.probes))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def report(self, plane: str | None = None) -> tuple[bool, dict[str, Any]]:
        """(healthy, JSON body) for one plane or, with ``plane=None``, all of them."""
        if plane is not None:
            state = self.state[plane]
            return state.healthy, state.as_json()
        planes = {name: state.as_json() for name, state in self.state.items()}
        healthy = all(state.healthy for state in self.state.values())
        return healthy, {"status": "up" if healthy else "down", "planes": planes}


def _reasons(state: PlaneHealth) -> list[str]:
    if state.error:
        return [state.error]
    return [f"{b.name}@{b.address}: {b.reason or 'down'}" for b in state.backends if not b.healthy]
