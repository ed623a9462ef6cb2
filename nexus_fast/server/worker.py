"""One worker process: a uvloop event loop running the data planes and the admin HTTP server.

Life of a worker:
1. build one plane per configured section (``[postgres]`` -> ``nexus_fast.postgres.plane.create_plane``,
   ``[redis]`` -> ``nexus_fast.redis.plane.create_plane``) and start them (their listeners bind with
   SO_REUSEPORT, so N workers share each port and the kernel spreads connections);
2. start the health monitor and the admin listeners, then report ready;
3. SIGHUP: re-read and validate the file whole, then ``plane.reload(new)`` on each plane; if the file is invalid or
   any plane refuses, the planes that already took the new config get the old one back and the old config keeps
   running; the outcome is logged and shown on ``/config`` (``last_reload``);
4. SIGTERM/SIGINT: stop accepting (``/ready`` turns 503), let in-flight work finish for at most
   ``server.shutdown_timeout``, close everything, exit 0.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import time
from typing import Any

import uvloop
from prometheus_client import ProcessCollector

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import LoadedConfig, load_config
from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe import logging as nexus_logging
from nexus_fast.observe.metrics import Metrics
from nexus_fast.server import worker_metrics
from nexus_fast.server.admin_http import AdminServer
from nexus_fast.server.health import HealthMonitor, Probe
from nexus_fast.server.plane import BackendHealth, Plane, PlaneFactory
from nexus_fast.tasks import cancel_and_wait_all

log = nexus_logging.get_logger("worker")

# Section of nexus.toml -> module whose create_plane(config, metrics) builds that plane.
PLANE_MODULES = {"postgres": "nexus_fast.postgres.plane", "redis": "nexus_fast.redis.plane"}
# Extra planes as "module:factory[,module:factory]": how tests (and embedders) plug in a plane of their own.
EXTRA_PLANES_ENV = "NEXUS_FAST_EXTRA_PLANES"

RESTART_HINT = " (SIGUSR2 to the supervisor restarts the workers without closing ports)"

HEARTBEAT_INTERVAL = 1.0  # seconds between "H" bytes on the status pipe (server.worker_watchdog_timeout watches)

EXIT_OK = 0
EXIT_STARTUP_FAILED = 3  # the supervisor does not restart a worker that could not start


def plane_factories(config: NexusConfig) -> list[tuple[str, PlaneFactory]]:
    """(section, factory) for every configured section whose plane module is installed, plus extra planes."""
    found: list[tuple[str, PlaneFactory]] = []
    for section, module_name in PLANE_MODULES.items():
        if getattr(config, section) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            log.warning("plane_unavailable", plane=section, reason=f"{module_name} is not installed")
            continue
        found.append((section, module.create_plane))
    for spec in filter(None, os.environ.get(EXTRA_PLANES_ENV, "").split(",")):
        module_name, _, attr = spec.strip().partition(":")
        found.append((module_name, getattr(importlib.import_module(module_name), attr or "create_plane")))
    return found


def fallback_probes(worker: Worker) -> dict[str, Probe]:
    """Health probes for configured sections that have no plane yet, so /health still reflects the backends.

    They read the worker's current config on every probe, so a reload that changes the backends is followed.
    """
    from nexus_fast.server import backends

    def probe_of(section: str) -> Probe:
        async def probe(timeout: float) -> list[BackendHealth]:
            current = backends.probe_for_section(worker.config, section)
            return await current(timeout) if current is not None else []

        return probe

    return {
        section: probe_of(section)
        for section in PLANE_MODULES
        if getattr(worker.config, section) is not None and section not in worker.planes
    }


class Worker:
    """The planes, health monitor and admin server of one process; implements ``AdminState``."""

    def __init__(self, config_path: str, loaded: LoadedConfig, worker_id: int = 0, supervised: bool = False,
                 metrics_dir: str | None = None, status_fd: int | None = None) -> None:
        self.config_path = config_path
        self.status_fd = status_fd  # pipe to the supervisor: "R" once serving, then "H" heartbeats
        self._heartbeat: asyncio.Task[None] | None = None
        self.metrics_dir = metrics_dir  # where sibling workers share their metrics (server/worker_metrics.py)
        self._publisher: asyncio.Task[None] | None = None
        self.supervised = supervised  # forked by a Supervisor: process-wide actions go through it
        self._parent = os.getppid()
        self.loaded = loaded
        self.worker_id = worker_id
        self.ready = False
        self.metrics = Metrics()
        self.planes: dict[str, Plane] = {}
        self.last_reload: dict[str, Any] = {"status": "none", "digest": loaded.digest}
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._reload_tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.health = HealthMonitor({}, 1.0, 1.0)
        self.admin = AdminServer(self)
        self._reloads = self.metrics.counter(
            "nexus_config_reloads_total", "Config reloads by result (applied, rejected).", ["result"])
        info = self.metrics.gauge("nexus_worker_info", "1 per worker process; pid and worker index as labels.",
                                  ["worker", "pid"])
        info.labels(str(worker_id), str(os.getpid())).set(1)
        # CPU seconds, resident memory and open fds of this process: what a Kubernetes HPA or an alert on memory
        # per connection reads (process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds).
        ProcessCollector(registry=self.metrics.registry)
        self._loop_lag = self.metrics.gauge(
            "nexus_worker_event_loop_lag_seconds",
            "How late the event loop woke for a timer in the last second: a saturated worker lags.")
        # Named after Prometheus's own prometheus_config_last_reload_* so the usual alert rule carries over.
        self._reload_ok = self.metrics.gauge(
            "nexus_config_last_reload_successful", "1 if the last config reload was applied (or none was tried).")
        self._reload_ok.set(1)
        self._reload_ok_at = self.metrics.gauge(
            "nexus_config_last_reload_success_timestamp_seconds", "When the running config was loaded (Unix time).")
        self._reload_ok_at.set(time.time())
        self._config_info = self.metrics.gauge(
            "nexus_config_info", "1 for the digest (sha256) of the running config.", ["digest"])
        self._config_info.labels(loaded.digest).set(1)

    @property
    def config(self) -> NexusConfig:
        return self.loaded.config

    async def start(self) -> None:
        for name, factory in plane_factories(self.config):
            plane = factory(self.config, self.metrics)
            self.planes[getattr(plane, "name", name)] = plane
            # Hooks a plane's own admin surface (the PgBouncer console's RELOAD / SHUTDOWN) calls.
            try:
                plane.admin_reload = self.admin_reload  # type: ignore[attr-defined]
                plane.admin_shutdown = self.admin_shutdown  # type: ignore[attr-defined]
            except AttributeError:  # a plane with __slots__ has no admin surface to hook
                pass
        for name, plane in self.planes.items():
            await plane.start()
            log.info("plane_started", plane=name)
        probes: dict[str, Probe] = {name: plane.check_health for name, plane in self.planes.items()}
        probes.update(fallback_probes(self))
        admin = self.config.admin
        self.health = HealthMonitor(probes, admin.health_check_interval, admin.health_check_timeout, self.metrics)
        await self.health.check_all()  # /health answers from a real probe from the first request on
        self.health.start()
        if self.metrics_dir is not None:
            self._publisher = asyncio.get_running_loop().create_task(
                worker_metrics.publish_forever(self.metrics_dir, self.worker_id, self.metrics))
        await self.admin.start()
        self.ready = True
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(self.status_fd))
        log.info("worker_ready", worker=self.worker_id, planes=",".join(self.planes) or "none",
                 digest=self.loaded.digest[:12])

    async def _beat(self, fd: int | None) -> None:
        """Once a second from the event loop itself: measure how late the loop woke (nexus_worker_event_loop_lag_
        seconds) and, under a supervisor, write a heartbeat on the status pipe ("R" first): a stuck loop stops
        beating and the watchdog replaces the worker."""
        loop = asyncio.get_running_loop()
        message = b"R"
        if fd is not None:
            os.set_blocking(fd, False)
        while True:
            if fd is not None:
                try:
                    os.write(fd, message)
                except BlockingIOError:
                    pass  # the supervisor is behind on reading; the next beat will do
                except OSError:
                    fd = None  # the supervisor is gone
            message = b"H"
            started = loop.time()
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            self._loop_lag.set(max(0.0, loop.time() - started - HEARTBEAT_INTERVAL))

    def request_stop(self, signame: str = "") -> None:
        if not self._stop.is_set():
            log.info("shutdown_requested", signal=signame, worker=self.worker_id)
            self._stop.set()

    def request_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    async def admin_reload(self) -> None:
        """RELOAD from a plane's admin console: every worker reloads (through the supervisor when there is one)."""
        if self.supervised:
            os.kill(os.getppid(), signal.SIGHUP)
        else:
            await self.reload()

    async def reload_from_http(self) -> tuple[int, dict[str, Any]]:
        """POST /reload: reload here and answer the outcome, or hand it to the supervisor for every worker."""
        if self.supervised:
            os.kill(os.getppid(), signal.SIGHUP)
            return 202, {"status": "requested", "scope": "every worker", "hint": "see last_reload on /config"}
        result = await self.reload()
        return (200 if result["status"] == "applied" else 422), result

    async def admin_shutdown(self) -> None:
        """SHUTDOWN from a plane's admin console: the whole process drains and exits."""
        if self.supervised:
            os.kill(os.getppid(), signal.SIGTERM)
        else:
            self.request_stop("admin SHUTDOWN")

    async def reload(self) -> dict[str, Any]:
        """Validate the file whole, apply it to every plane, or keep the old config and say why."""
        async with self._reload_lock:
            started = time.time()
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                return self._reload_failed(started, str(exc), [str(p) for p in exc.problems])
            except Exception as exc:  # an importer crash must not take the worker down
                return self._reload_failed(started, f"{self.config_path}: cannot load: {exc!r}", [])
            refusal = self._restart_only_changes(new.config)
            if refusal:
                return self._reload_failed(started, refusal, [])
            applied: list[Plane] = []
            for name, plane in self.planes.items():
                try:
                    await plane.reload(new.config)
                    applied.append(plane)
                except Exception as exc:
                    # Atomic: planes that already took the new config get the old one back.
                    for done in applied:
                        try:
                            await done.reload(self.config)
                        except Exception:
                            log.exception("reload_rollback_failed", plane=getattr(done, "name", "?"))
                    return self._reload_failed(started, f"plane {name} refused the new config: {exc}", [])
            old_digest = self.loaded.digest
            self.loaded = new
            server, admin = new.config.server, new.config.admin
            nexus_logging.configure(server.log_format, server.log_level)
            self.health.configure(admin.health_check_interval, admin.health_check_timeout)
            self.last_reload = {"status": "applied", "at": started, "digest": new.digest, "reason": ""}
            self._reloads.labels("applied").inc()
            self._reload_ok.set(1)
            self._reload_ok_at.set(started)
            if new.digest != old_digest:
                self._config_info.remove(old_digest)
                self._config_info.labels(new.digest).set(1)
            log.info("reload_applied", worker=self.worker_id, old_digest=old_digest[:12], digest=new.digest[:12],
                     warnings=len(new.warnings))
            return self.last_reload

    def _restart_only_changes(self, new: NexusConfig) -> str:
        """Changes a running worker cannot apply in place: refused (the old config stays) with the reason."""
        old = self.config
        for section in PLANE_MODULES:
            if (getattr(old, section) is None) != (getattr(new, section) is None):
                verb = "adding" if getattr(old, section) is None else "removing"
                return f"{verb} the [{section}] section needs a restart{RESTART_HINT}"
        for key in ("listen", "postgres_health_listen", "redis_health_listen"):
            if getattr(old.admin, key) != getattr(new.admin, key):
                return f"admin.{key} changed; listeners are bound at start, so this needs a restart{RESTART_HINT}"
        if old.server.workers != new.server.workers:
            log.warning("reload_ignores_key", key="server.workers", reason="the worker count applies at restart")
        return ""

    def _reload_failed(self, started: float, reason: str, problems: list[str]) -> dict[str, Any]:
        self.last_reload = {"status": "rejected", "at": started, "digest": self.loaded.digest, "reason": reason,
                            "problems": problems}
        self._reloads.labels("rejected").inc()
        self._reload_ok.set(0)
        log.error("reload_rejected", worker=self.worker_id, reason=reason.splitlines()[0],
                  problems="; ".join(problems), kept_digest=self.loaded.digest[:12])
        return self.last_reload

    async def shutdown(self) -> None:
        """Stop accepting, drain in-flight work within ``server.shutdown_timeout``, then close everything."""
        self.ready = False
        timeout = self.config.server.shutdown_timeout
        started = time.monotonic()
        log.info("draining", worker=self.worker_id, timeout=timeout)
        for name, plane in self.planes.items():
            try:
                plane.stop_accepting()
            except Exception:  # a plane that never started may have nothing to close
                log.exception("stop_accepting_failed", plane=name)
        results = await asyncio.gather(*(p.drain(timeout) for p in self.planes.values()), return_exceptions=True)
        for name, result in zip(self.planes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("drain_failed", plane=name, reason=repr(result))
        for name, plane in self.planes.items():
            try:
                await plane.close()
            except Exception:
                log.exception("close_failed", plane=name)
        await self.health.stop()
        await self.admin.stop()
        # heartbeats continue through the drain above: a draining worker is alive
        await cancel_and_wait_all([t for t in (self._heartbeat, self._publisher) if t is not None])
        if self.metrics_dir is not None:
            worker_metrics.withdraw(self.metrics_dir, self.worker_id, orphaned=os.getppid() != self._parent)
        for task in list(self._reload_tasks):
            task.cancel()
        log.info("stopped", worker=self.worker_id, drained_in=round(time.monotonic() - started, 3))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if not self.supervised:  # SIGUSR2 (online restart) is the supervisor's; never let it kill a lone worker
            loop.add_signal_handler(signal.SIGUSR2, lambda: log.warning(
                "restart_unsupported", reason="online restart (SIGUSR2) needs server.workers >= 2 or server.supervise"))
        # A forked worker inherits the supervisor's blocked mask; unblock only now that the handlers exist, so a
        # signal that arrived in between is handled, not fatal by its default action.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})
        try:
            await self.start()
        except Exception as exc:
            log.exception("startup_failed", worker=self.worker_id, reason=str(exc))
            await self.shutdown()
            return EXIT_STARTUP_FAILED
        await self._stop.wait()
        await self.shutdown()
        return EXIT_OK


def run_worker(config_path: str, loaded: LoadedConfig, worker_id: int = 0, supervised: bool = False,
               metrics_dir: str | None = None, status_fd: int | None = None) -> int:
    """Run one worker to completion on a fresh uvloop loop; returns the process exit code."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(Worker(config_path, loaded, worker_id, supervised, metrics_dir, status_fd).run())
