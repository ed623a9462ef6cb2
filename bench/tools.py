"""The external programs a benchmark run uses: found on PATH or reported missing with how to install them.

Nothing is installed silently: a missing load generator or peer is named with the Debian package that provides it,
and every scenario or target that needs it is skipped with that reason in the report.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

# program -> (Debian package, what it is for in the run, command printing its version)
TOOLS: dict[str, tuple[str, str, list[str]]] = {
    "pgbench": ("postgresql-client", "PostgreSQL load generator", ["pgbench", "--version"]),
    "psql": ("postgresql-client", "creates the benchmark database", ["psql", "--version"]),
    "redis-benchmark": ("redis-tools", "Redis load generator", ["redis-benchmark", "--version"]),
    "redis-server": ("redis-server", "nodes of the 3-node ring", ["redis-server", "--version"]),
    "pgbouncer": ("pgbouncer", "the PostgreSQL peer (PgBouncer)", ["pgbouncer", "--version"]),
    "nutcracker": ("nutcracker", "the Redis peer (twemproxy)", ["nutcracker", "--version"]),
    "haproxy": ("haproxy", "the protocol-unaware TCP relay (HAProxy)", ["haproxy", "-v"]),
}


@dataclass(frozen=True)
class ToolStatus:
    name: str
    path: str | None
    version: str | None
    package: str
    purpose: str

    @property
    def available(self) -> bool:
        return self.path is not None

    @property
    def install_hint(self) -> str:
        return f"apt-get install {self.package}"

    @property
    def missing_reason(self) -> str:
        return f"{self.name} not found on PATH ({self.purpose}); install it with `{self.install_hint}`"


def _version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else None


def check_tools(names: list[str] | None = None) -> dict[str, ToolStatus]:
    """Status of each tool (all of TOOLS by default), with its version when present."""
    statuses: dict[str, ToolStatus] = {}
    for name in names or list(TOOLS):
        package, purpose, version_argv = TOOLS[name]
        path = shutil.which(name)
        statuses[name] = ToolStatus(name, path, _version(version_argv) if path else None, package, purpose)
    return statuses


def install_advice(statuses: dict[str, ToolStatus]) -> str | None:
    """One apt-get line for everything missing, or None when nothing is."""
    packages = sorted({status.package for status in statuses.values() if not status.available})
    return f"apt-get install {' '.join(packages)}" if packages else None
