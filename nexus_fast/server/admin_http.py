"""Admin HTTP (aiohttp on the worker's uvloop loop): health, readiness, Prometheus metrics, effective config.

Routes (every answer is JSON except /metrics):

- ``GET /health``: aggregate of every plane; 200 when every backend passed its last probe, else 503.
- ``GET /health/postgres``, ``GET /health/redis`` (and ``/health/<plane>`` for any plane): one plane;
  404 when that plane is not configured.
- ``GET /ready``: 200 once every plane has started and until shutdown begins (a Kubernetes readiness probe).
- ``GET /metrics``: Prometheus text exposition; with several workers, every worker's samples labelled
  ``worker="<n>"`` (``?scope=worker``: only the worker that answered; see ``worker_metrics.py``).
- ``POST /reload``: the SIGHUP reload over HTTP (``admin.http_reload``): 200 with the outcome when this process
  is the only worker (422 when the new file was refused, old config kept), 202 when a supervisor reloads every
  worker (each worker's outcome then shows on its ``/config``).
- ``GET /config``: effective config with secrets redacted, its sha256 digest, the last reload's result, and
  ``file``: whether the file on disk still matches (``drifted``, the drifted ``keys``).

The optional dedicated listeners ``admin.postgres_health_listen`` / ``admin.redis_health_listen`` (the roadmap's
ports 1100 and 1200) answer every GET with that plane's health, so a TCP/HTTP health checker needs no path.
Every listener binds with SO_REUSEPORT so sibling workers share the port; health and config answers come from the
worker that accepted the request (its ``pid`` is in every JSON answer). ``admin.tls_cert_file``/``tls_key_file``
serve every admin listener over HTTPS; ``admin.auth_token`` puts ``/config`` and ``POST /reload`` behind a bearer
token (probes and scrapes stay open: they carry no secrets and must not need one).
"""

from __future__ import annotations

import hmac
import os
import ssl
from typing import Any, Protocol

from aiohttp import web

from nexus_fast.config.drift import diff
from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import LoadedConfig, load_config, to_dict
from nexus_fast.config.section import parse_listen
from nexus_fast.observe.logging import get_logger
from nexus_fast.observe.metrics import Metrics
from nexus_fast.server import worker_metrics
from nexus_fast.server.health import HealthMonitor

log = get_logger("admin")


class AdminState(Protocol):
    """What the admin server reads from its worker."""

    worker_id: int
    metrics_dir: str | None  # set when sibling workers share metrics (server/worker_metrics.py)
    ready: bool
    metrics: Metrics
    health: HealthMonitor
    loaded: LoadedConfig
    last_reload: dict[str, Any]

    async def reload_from_http(self) -> tuple[int, dict[str, Any]]:
        """POST /reload: (HTTP status, body)."""
        ...


def _json(state: AdminState, body: dict[str, Any], status: int = 200) -> web.Response:
    body = {**body, "worker": state.worker_id, "pid": os.getpid()}
    return web.json_response(body, status=status)


def _plane_health(state: AdminState, plane: str) -> web.Response:
    if plane not in state.health.state:
        return _json(state, {"plane": plane, "status": "absent", "reason": f"no [{plane}] plane is configured"}, 404)
    healthy, body = state.health.report(plane)
    return _json(state, body, 200 if healthy else 503)


def file_drift(loaded: LoadedConfig) -> dict[str, Any]:
    """Does the file on disk still say what is running? (Edited but not reloaded, or its reload was rejected.)"""
    try:
        on_disk = load_config(loaded.source)
    except ConfigError as exc:
        return {"valid": False, "drifted": True, "reason": str(exc)}
    drifts = diff(loaded.config, on_disk.config)
    return {"valid": True, "digest": on_disk.digest, "drifted": on_disk.digest != loaded.digest,
            "keys": [d.key_path for d in drifts]}


def _authorized(state: AdminState, request: web.Request) -> bool:
    token = state.loaded.config.admin.auth_token
    if token is None:
        return True
    given = request.headers.get("Authorization", "")
    expected = "Bearer " + token.get_secret_value()
    return hmac.compare_digest(given.encode(), expected.encode())  # constant time: no token oracle


def _unauthorized(state: AdminState) -> web.Response:
    response = _json(state, {"status": "unauthorized", "reason": "admin.auth_token is set: send Authorization: "
                                                                  "Bearer <token>"}, 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="nexus-fast admin"'
    return response


def build_app(state: AdminState) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        healthy, body = state.health.report()
        return _json(state, body, 200 if healthy else 503)

    async def plane_health(request: web.Request) -> web.Response:
        return _plane_health(state, request.match_info["plane"])

    async def ready(_request: web.Request) -> web.Response:
        if state.ready:
            return _json(state, {"status": "ready"})
        return _json(state, {"status": "not ready"}, 503)

    async def metrics(request: web.Request) -> web.Response:
        if state.metrics_dir is not None and request.query.get("scope") != "worker":
            body = worker_metrics.all_workers_exposition(state.metrics_dir, state.worker_id, state.metrics)
        else:
            body = state.metrics.exposition()
        # content_type cannot carry the "; version=0.0.4; charset=utf-8" parameters in aiohttp: set the header.
        return web.Response(body=body, headers={"Content-Type": state.metrics.content_type})

    async def config(request: web.Request) -> web.Response:
        if not _authorized(state, request):
            return _unauthorized(state)
        loaded = state.loaded
        return _json(state, {
            "source": loaded.source,
            "format": loaded.file_format,
            "digest": loaded.digest,
            "warnings": loaded.warnings,
            "last_reload": state.last_reload,
            "file": file_drift(loaded),
            "config": to_dict(loaded.config, redact=True),
        })

    async def reload(request: web.Request) -> web.Response:
        if not _authorized(state, request):
            return _unauthorized(state)
        if not state.loaded.config.admin.http_reload:
            return _json(state, {"status": "refused", "reason": "admin.http_reload is off"}, 403)
        status, body = await state.reload_from_http()
        return _json(state, body, status)

    app = web.Application()
    app.router.add_post("/reload", reload)
    app.router.add_get("/health", health)
    app.router.add_get("/health/{plane}", plane_health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config", config)
    return app


def build_plane_health_app(state: AdminState, plane: str) -> web.Application:
    """The app behind a dedicated health port: any GET answers ``plane``'s health."""

    async def answer(_request: web.Request) -> web.Response:
        return _plane_health(state, plane)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


class AdminServer:
    """The admin listener and the optional dedicated health listeners of one worker."""

    def __init__(self, state: AdminState) -> None:
        self.state = state
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        admin = self.state.loaded.config.admin
        listeners: list[tuple[str, str, web.Application]] = []
        if admin.listen:
            listeners.append(("admin", admin.listen, build_app(self.state)))
        if admin.postgres_health_listen:
            listeners.append(("postgres-health", admin.postgres_health_listen, build_plane_health_app(self.state, "postgres")))
        if admin.redis_health_listen:
            listeners.append(("redis-health", admin.redis_health_listen, build_plane_health_app(self.state, "redis")))
        ssl_context = None
        if admin.tls_cert_file and admin.tls_key_file:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_context.load_cert_chain(admin.tls_cert_file, admin.tls_key_file)
        for label, listen, app in listeners:
            host, port = parse_listen(listen)
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            self._runners.append(runner)
            # reuse_port: sibling workers bind the same admin port (SO_REUSEPORT), as the planes' listeners do.
            site = web.TCPSite(runner, host, port, reuse_port=True, ssl_context=ssl_context)
            await site.start()
            log.info("listening", listener=label, address=listen, tls=ssl_context is not None)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
