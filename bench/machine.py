"""What machine a run was taken on: CPU model, cores, memory, kernel, OS, load, and every program's version.

Figures from one machine are only comparable with figures from the same machine; the report carries this
description so a reader knows what the numbers mean (and whether the machine was busy with other work).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.tools import ToolStatus


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_bytes() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def postgres_server_version(host: str, port: int) -> str | None:
    try:
        done = subprocess.run(["psql", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres", "-Atc",
                               "SHOW server_version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def redis_server_version(host: str, port: int) -> str | None:
    try:
        done = subprocess.run(["redis-cli", "-h", host, "-p", str(port), "INFO", "server"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return None


def nexus_fast_description() -> dict[str, object]:
    from nexus_fast import __version__, _extensions

    return {"version": __version__,
            "native_modules": {status.name: ("compiled" if status.compiled else f"pure-python ({status.reason})")
                               for status in _extensions.report()}}


def describe(tools: dict[str, ToolStatus], *, postgres: tuple[str, int] | None = None,
             redis: tuple[str, int] | None = None) -> dict[str, object]:
    """Everything the report says about the machine and the software measured."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "kernel": platform.release(),
        "os": os_name(),
        "python": sys.version.split()[0],
        "load_average_at_start": load_average(),
        "tools": {name: {"path": status.path, "version": status.version} for name, status in tools.items()},
        "postgres_server": postgres_server_version(*postgres) if postgres else None,
        "redis_server": redis_server_version(*redis) if redis else None,
        "nexus_fast": nexus_fast_description(),
    }
