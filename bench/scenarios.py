"""The scenarios of a run and the jobs that measure them.

A *job* is one invocation of a load generator against one target (for example ``redis-benchmark -t set,get -P 16``);
it yields one or more *scenarios* (that invocation gives both "SET -P 16" and "GET -P 16"). ``--scenarios`` selects
by family (``redis``, ``ring``, ``postgres``, ``idle``), by job id or by scenario id, with shell-style wildcards
(``pg-select-*``).

Families and the peer every figure is also compared with:

- ``redis``: redis-benchmark SET and GET, 50 clients, ``-P 1`` and ``-P 16``, against one Redis; peer twemproxy.
- ``ring``: the same over a 3-node ring (twemproxy and nexus-fast hashing with ketama/fnv1a_64; ``direct`` is one
  node alone, the ceiling a ring of such nodes would need to beat); peer twemproxy.
- ``postgres``: pgbench ``-S`` (select only), TPC-B (pgbench's default script) and ``-S -C`` (a new connection per
  transaction), each at 16 and 64 clients, scale 1; peer PgBouncer.
- ``idle``: N logged-in idle client connections held against the proxy; resident memory per connection; peers
  PgBouncer (PostgreSQL) and twemproxy (Redis).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Scenario:
    id: str
    family: str
    title: str
    # The headline figure and whether more is better: throughput (req/s or tps) or bytes per idle connection.
    metric: str
    unit: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Job:
    id: str
    family: str
    endpoint: str                     # "postgres", "redis" or "ring": which endpoint of each target it uses
    tool: str | None                  # the program it needs (None: the harness itself is the client)
    peer: str                         # the target every figure is compared with besides direct
    targets: tuple[str, ...]          # targets it applies to
    scenarios: tuple[Scenario, ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


REDIS_TARGETS = ("direct", "haproxy", "twemproxy", "nexus-1w", "nexus-2w")
RING_TARGETS = ("direct", "twemproxy", "nexus-1w", "nexus-2w")
POSTGRES_TARGETS = ("direct", "haproxy", "pgbouncer", "nexus-1w", "nexus-2w")


def _redis_jobs(family: str, targets: tuple[str, ...], where: str) -> list[Job]:
    jobs = []
    for pipeline in (1, 16):
        scenarios = tuple(
            Scenario(f"{family}-{command.lower()}-p{pipeline}", family,
                     f"{command}, 50 clients, -P {pipeline}, {where}", "throughput", "req/s")
            for command in ("SET", "GET")
        )
        jobs.append(Job(f"{family}-p{pipeline}", family, family, "redis-benchmark", "twemproxy", targets,
                        scenarios, {"pipeline": pipeline, "clients": 50}))
    return jobs


def _postgres_jobs() -> list[Job]:
    jobs = []
    kinds = [("select", "pgbench -S", True, False), ("tpcb", "pgbench TPC-B", False, False),
             ("select-connect", "pgbench -S -C", True, True)]
    for key, title, select_only, connect_each in kinds:
        for clients in (16, 64):
            scenario = Scenario(f"pg-{key}-c{clients}", "postgres", f"{title}, {clients} clients", "throughput", "tps")
            jobs.append(Job(scenario.id, "postgres", "postgres", "pgbench", "pgbouncer", POSTGRES_TARGETS,
                            (scenario,), {"clients": clients, "select_only": select_only,
                                          "connect_each": connect_each}))
    return jobs


def _idle_jobs() -> list[Job]:
    return [
        Job("idle-postgres", "idle", "postgres", None, "pgbouncer", ("pgbouncer", "nexus-1w"),
            (Scenario("idle-postgres", "idle", "idle PostgreSQL clients: memory per connection",
                      "bytes_per_connection", "bytes", higher_is_better=False),), {"protocol": "postgres"}),
        Job("idle-redis", "idle", "redis", None, "twemproxy", ("twemproxy", "nexus-1w"),
            (Scenario("idle-redis", "idle", "idle Redis clients: memory per connection",
                      "bytes_per_connection", "bytes", higher_is_better=False),), {"protocol": "redis"}),
    ]


def all_jobs() -> list[Job]:
    return (_redis_jobs("redis", REDIS_TARGETS, "one Redis") + _redis_jobs("ring", RING_TARGETS, "3-node ring")
            + _postgres_jobs() + _idle_jobs())


FAMILIES = ("redis", "ring", "postgres", "idle")


def select_jobs(patterns: list[str] | None) -> list[Job]:
    """Jobs matching any pattern (family, job id or scenario id; wildcards allowed); all when ``patterns`` is
    empty. A pattern matching nothing raises ValueError naming what exists."""
    jobs = all_jobs()
    if not patterns:
        return jobs
    chosen: list[Job] = []
    for pattern in patterns:
        matched = [job for job in jobs
                   if fnmatch.fnmatch(job.family, pattern) or fnmatch.fnmatch(job.id, pattern)
                   or any(fnmatch.fnmatch(scenario.id, pattern) for scenario in job.scenarios)]
        if not matched:
            names = sorted({job.family for job in jobs} | {s.id for job in jobs for s in job.scenarios})
            raise ValueError(f"--scenarios {pattern!r} matches nothing; choose from: {', '.join(names)}")
        chosen += [job for job in matched if job not in chosen]
    return [job for job in jobs if job in chosen]
