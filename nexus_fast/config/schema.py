"""The nexus.toml schema: one root model, one section per concern.

Validation uses pydantic v2. Why pydantic rather than hand-written checks or msgspec: its errors carry the exact
location of every problem (``loc``), which becomes the key path we report (``redis.pools.cache.hash``); it
collects all problems in one pass instead of stopping at the first; and ``extra="forbid"`` turns every unknown or
misspelt key into an error. msgspec is faster but validation speed is irrelevant at config-load time, and its
error messages stop at the first problem. TOML itself is parsed with the standard library's ``tomllib``.

Each data plane owns its section's model (``nexus_fast.postgres.config``, ``nexus_fast.redis.config``) so the
schema grows with the product without this file becoming a catch-all.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from nexus_fast.config.section import Section, parse_listen
from nexus_fast.config.units import Duration
from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.redis.config import RedisConfig


class ServerSection(Section):
    """The process: worker count, shutdown and logging."""

    workers: int | Literal["auto"] = Field(1, description='Worker processes sharing the listeners; "auto" = the CPUs this process may use.')
    shutdown_timeout: Duration = Field(30.0, description="How long SIGTERM waits for in-flight work before closing.")
    supervise: bool = Field(
        False, description="Run a supervisor process even with one worker, for online restart (SIGUSR2), the "
        "watchdog and crash restarts; with workers > 1 there always is one.")
    worker_watchdog_timeout: Duration = Field(
        30.0, description="With several workers: a worker whose event loop sent no heartbeat for this long is "
        "killed and replaced (0 = off).")
    log_format: Literal["logfmt", "json"] = Field(
        "logfmt", description="Structured log lines on stderr: logfmt (key=value) or json, one line per event.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of nexus-fast's own events that is logged (libraries log warnings and up).")

    @field_validator("workers")
    @classmethod
    def _workers_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError("workers must be between 1 and 256, or \"auto\"")
        return value

    def worker_count(self) -> int:
        if self.workers != "auto":
            return int(self.workers)
        # The CPUs this process may run on (a container's cpuset), not every CPU of the host.
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


class AdminSection(Section):
    """Admin HTTP (health, readiness, metrics, effective config) and the backend health probes behind it."""

    listen: str | None = Field("127.0.0.1:8080", description="Admin HTTP: /health, /ready, /metrics, /config.")
    postgres_health_listen: str | None = Field(None, description="Optional dedicated PostgreSQL health port (the roadmap's 1100).")
    redis_health_listen: str | None = Field(None, description="Optional dedicated Redis health port (the roadmap's 1200).")
    health_check_interval: Duration = Field(2.0, description="How often backends are probed for /health.")
    health_check_timeout: Duration = Field(1.0, description="A probe slower than this counts as failed.")
    http_reload: bool = Field(True, description="Accept POST /reload on the admin listener (the same reload as SIGHUP).")
    tls_cert_file: str | None = Field(
        None, description="Serve the admin and health listeners over HTTPS with this certificate (PEM; with tls_key_file).")
    tls_key_file: str | None = Field(None, description="Private key of tls_cert_file (PEM).")
    auth_token: SecretStr | None = Field(
        None, description="When set, POST /reload and GET /config require `Authorization: Bearer <token>`; "
        "/health, /ready and /metrics stay open for probes and scrapers.")

    @field_validator("listen", "postgres_health_listen", "redis_health_listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> AdminSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class NexusConfig(Section):
    server: ServerSection = ServerSection()
    admin: AdminSection = AdminSection()
    postgres: PostgresConfig | None = None
    redis: RedisConfig | None = None
