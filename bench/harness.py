"""The end-to-end run: check the tools, start every target, run the jobs interleaved, write the report.

Order of work. All targets are started first and stay up for the whole run. Then, job by job, each round runs the
job once against every target in turn (A B C A B C ...), so a disturbance of the machine (this is often a shared
machine) spreads over all targets instead of falling on one, and the rounds of a figure are minutes apart at most.

What is measured per run: the load generator's own figures (throughput, mean/p50/p99 latency), and the target
process tree's CPU time over the run (``/proc``), divided by the requests completed: the proxy's CPU per request
(for ``direct`` there is no proxy, so no such figure); likewise the CPU per request of the servers behind it, when
the harness started them.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bench import machine
from bench.idle import hold_idle_connections
from bench.pgbench import PgbenchError, initialise_database, run_pgbench
from bench.processes import tree_cpu_seconds
from bench.redis_benchmark import RedisBenchmarkError, run_redis_benchmark
from bench.report import build_report, write_outputs
from bench.scenarios import Job, select_jobs
from bench.targets import TARGET_NAMES, Endpoint, TargetOptions, TargetSet
from bench.tools import ToolStatus, check_tools, install_advice
from nexus_fast._testing import peers


@dataclass
class RunSettings:
    """How much work a run does; ``--quick`` and full mode are two presets of these."""

    mode: str
    rounds: int
    pg_duration_s: int
    redis_requests: dict[int, int]            # pipeline depth -> requests per test
    idle_connections: int
    settle_s: float
    pool_size: int = 20
    database: str = "nexus_bench"
    scale: int = 1
    # None: the harness starts a dedicated PostgreSQL / redis-server (see OWN_POSTGRES_SETTINGS, TargetSet).
    postgres: tuple[str, int] | None = None
    postgres_origin: str = "named with --postgres"
    postgres_pid: int | None = None
    redis: tuple[str, int] | None = None
    note: str = ""

    @classmethod
    def quick(cls) -> RunSettings:
        return cls(mode="quick", rounds=2, pg_duration_s=1, redis_requests={1: 20000, 16: 100000},
                   idle_connections=1000, settle_s=0.5)

    @classmethod
    def full(cls) -> RunSettings:
        return cls(mode="full", rounds=3, pg_duration_s=10, redis_requests={1: 100000, 16: 1000000},
                   idle_connections=10000, settle_s=2.0)


@dataclass
class Measurement:
    job: str
    scenario: str
    target: str
    round: int
    values: dict[str, float | None]
    requests: int | None = None
    proxy_cpu_seconds: float | None = None
    elapsed_s: float = 0.0
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    job: str
    target: str | None
    reason: str


class Progress:
    """One line per finished step on stderr: position, elapsed time, an estimate of what is left, the result."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.stream = stream

    @staticmethod
    def clock(seconds: float) -> str:
        seconds = max(0, int(seconds))
        return f"{seconds // 60}:{seconds % 60:02d}"

    def step(self, message: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        print(f"[{self.done:>3}/{self.total} {self.clock(elapsed)} elapsed, ~{self.clock(left)} left] {message}",
              file=self.stream, flush=True)


def _cpu(endpoint: Endpoint) -> tuple[float | None, float | None]:
    """CPU seconds so far of the target's process tree and of the backend servers behind it."""
    proxy = tree_cpu_seconds(endpoint.pid) if endpoint.pid is not None else None
    servers = sum(tree_cpu_seconds(pid) for pid in endpoint.server_pids) if endpoint.server_pids else None
    return proxy, servers


def _per_request(before: float | None, after: float | None, requests: int) -> float | None:
    """Microseconds of CPU per request between two readings, or None without readings or requests."""
    if before is None or after is None or not requests:
        return None
    return (after - before) / requests * 1e6


def run_redis_job(job: Job, endpoint: Endpoint, settings: RunSettings) -> list[Measurement]:
    pipeline = int(job.params["pipeline"])
    requests = settings.redis_requests[pipeline]
    before, started = _cpu(endpoint), time.monotonic()
    result = run_redis_benchmark(host=endpoint.address[0], port=endpoint.address[1], clients=job.params["clients"],
                                 requests=requests, pipeline=pipeline,
                                 # A hung target must not stall the run: give up below ~5,000 req/s.
                                 timeout_s=max(20.0, 2 * requests / 5000))
    elapsed = time.monotonic() - started
    after = _cpu(endpoint)
    total_requests = requests * len(result.rows)
    cpu = after[0] - before[0] if before[0] is not None and after[0] is not None else None
    per_request = _per_request(before[0], after[0], total_requests)
    server_per_request = _per_request(before[1], after[1], total_requests)
    measurements = []
    for scenario in job.scenarios:
        command = scenario.id.split("-")[1].upper()
        row = result.rows[command]
        measurements.append(Measurement(
            job.id, scenario.id, "", 0,
            {"throughput": row.rps, "latency_avg_ms": row.avg_latency_ms, "latency_p50_ms": row.p50_latency_ms,
             "latency_p99_ms": row.p99_latency_ms, "cpu_us_per_request": per_request,
             "server_cpu_us_per_request": server_per_request},
            requests=requests, proxy_cpu_seconds=cpu, elapsed_s=elapsed, raw=result.as_dict()))
    return measurements


def run_postgres_job(job: Job, endpoint: Endpoint, settings: RunSettings) -> list[Measurement]:
    connect_each = bool(job.params["connect_each"])
    select_only = bool(job.params["select_only"])
    # Log every transaction where they are few (TPC-B, -C); a 10% random sample where they are many (-S).
    sampling = 0.1 if select_only and not connect_each else 1.0
    before, started = _cpu(endpoint), time.monotonic()
    result = run_pgbench(host=endpoint.address[0], port=endpoint.address[1], database=settings.database,
                         clients=int(job.params["clients"]), duration_s=settings.pg_duration_s,
                         select_only=select_only, connect_each=connect_each, sampling_rate=sampling)
    elapsed = time.monotonic() - started
    after = _cpu(endpoint)
    transactions = result.summary.transactions
    cpu = after[0] - before[0] if before[0] is not None and after[0] is not None else None
    per_request = _per_request(before[0], after[0], transactions)
    server_per_request = _per_request(before[1], after[1], transactions)
    return [Measurement(job.id, job.scenarios[0].id, "", 0,
                        {"throughput": result.summary.tps, "latency_avg_ms": result.summary.latency_avg_ms,
                         "latency_p50_ms": result.latency_p50_ms, "latency_p99_ms": result.latency_p99_ms,
                         "cpu_us_per_request": per_request, "server_cpu_us_per_request": server_per_request},
                        requests=transactions, proxy_cpu_seconds=cpu, elapsed_s=elapsed, raw=result.as_dict())]


def run_idle_job(job: Job, endpoint: Endpoint, settings: RunSettings) -> list[Measurement]:
    if endpoint.pid is None:
        raise RuntimeError("idle memory needs a proxy process to measure")
    started = time.monotonic()
    result = hold_idle_connections(host=endpoint.address[0], port=endpoint.address[1], pid=endpoint.pid,
                                   count=settings.idle_connections, protocol=str(job.params["protocol"]),
                                   database=settings.database, settle_s=settings.settle_s)
    if result.connections < settings.idle_connections:
        raise RuntimeError(f"only {result.connections} of {settings.idle_connections} connections were "
                           f"accepted; first error: {result.first_error}")
    return [Measurement(job.id, job.scenarios[0].id, "", 0,
                        {"bytes_per_connection": result.bytes_per_connection},
                        requests=result.connections, elapsed_s=time.monotonic() - started, raw=result.as_dict())]


RUNNERS: dict[str, Callable[[Job, Endpoint, RunSettings], list[Measurement]]] = {
    "redis": run_redis_job, "ring": run_redis_job, "postgres": run_postgres_job, "idle": run_idle_job,
}


def _describe(measurement: Measurement, unit: str) -> str:
    values = measurement.values
    if "bytes_per_connection" in values:
        per = values["bytes_per_connection"]
        return f"{per / 1024:,.2f} KiB/connection" if per is not None else "n/a"
    text = f"{values['throughput']:>12,.0f} {unit}"
    if values.get("latency_p99_ms") is not None:
        text += f"  p99 {values['latency_p99_ms']:.3f} ms"
    if values.get("cpu_us_per_request") is not None:
        text += f"  cpu {values['cpu_us_per_request']:.1f} us/req"
    return text


# PostgreSQL's defaults except what a 64-client direct run next to three poolers' idle server connections needs.
OWN_POSTGRES_SETTINGS = {
    "max_connections": "300", "shared_buffers": "'128MB'", "fsync": "on", "synchronous_commit": "on",
    "full_page_writes": "on",
}


def _prepare_postgres(settings: RunSettings, tools: dict[str, ToolStatus], stack: contextlib.ExitStack,
                      say: Callable[[str], None]) -> str | None:
    """Start our own PostgreSQL unless one was named, and load pgbench's tables; the reason it failed, or None."""
    for tool in ("pgbench", "psql"):
        if not tools[tool].available:
            return tools[tool].missing_reason
    if settings.postgres is None:
        from nexus_fast._testing.postgres import HarnessError, pg_binaries_available, postgres_node

        if not pg_binaries_available():
            return ("no PostgreSQL server binaries (initdb, pg_ctl) to start a dedicated server; install "
                    "`apt-get install postgresql` or name one with --postgres HOST:PORT")
        say("starting a dedicated PostgreSQL (max_connections 300, otherwise PostgreSQL's defaults)")
        try:
            node = stack.enter_context(postgres_node(settings=OWN_POSTGRES_SETTINGS))
        except (HarnessError, OSError) as exc:
            return f"the dedicated PostgreSQL did not start: {exc}"
        settings.postgres = node.address
        settings.postgres_pid = node.postmaster_pid()
        settings.postgres_origin = f"dedicated server started by the harness ({OWN_POSTGRES_SETTINGS})"
    host, port = settings.postgres
    say(f"initialising database {settings.database} (pgbench -i -s {settings.scale}) on {host}:{port}")
    try:
        initialise_database(host=host, port=port, database=settings.database, scale=settings.scale)
    except (PgbenchError, OSError) as exc:
        return str(exc)
    return None


def _run_jobs(
    runnable: list[Job], settings: RunSettings, tools: dict[str, ToolStatus], target_names: list[str],
    endpoints: set[str], skips: list[Skip], description: dict[str, Any], stream: TextIO,
    say: Callable[[str], None],
) -> tuple[list[Measurement], dict[str, Any]]:
    assert settings.postgres is not None or "postgres" not in endpoints
    options = TargetOptions(postgres=settings.postgres or ("127.0.0.1", 5432), redis=settings.redis,
                            database=settings.database, pool_size=settings.pool_size,
                            postgres_pid=settings.postgres_pid)
    measurements: list[Measurement] = []
    # Idle-memory jobs get fresh instances (below): a proxy that already served load has free memory in its
    # allocator, which new connections would reuse and so look free.
    shared_endpoints = {job.endpoint for job in runnable if job.family != "idle"}
    with TargetSet(target_names, options, tools, shared_endpoints, log=say) as target_set:
        if "redis" in shared_endpoints:
            description["redis_server"] = machine.redis_server_version(*target_set.redis_address)
            description["redis_origin"] = ("named with --redis" if options.redis else
                                           "dedicated redis-server started by the harness (no persistence)")
        plan: list[tuple[Job, int, str, Endpoint | None]] = []
        for job in runnable:
            for round_index in range(settings.rounds):
                for name in job.targets:
                    if name not in target_names:
                        continue
                    if job.family == "idle":
                        plan.append((job, round_index, name, None))
                        continue
                    target = target_set.targets[name]
                    if job.endpoint in target.endpoints:
                        plan.append((job, round_index, name, target.endpoints[job.endpoint]))
                    elif round_index == 0:
                        reason = target.skipped.get(job.endpoint, f"{target.label} was not started")
                        skips.append(Skip(job.id, name, reason))
        say(f"{len(plan)} runs planned ({settings.mode} mode, {settings.rounds} rounds, targets interleaved)")
        progress = Progress(sum(len(job.scenarios) for job, *_rest in plan), stream)
        for job, round_index, name, endpoint in plan:
            unit = job.scenarios[0].unit
            try:
                if endpoint is None:
                    results = _run_fresh(job, name, options, tools, settings, skips, round_index)
                else:
                    results = RUNNERS[job.family](job, endpoint, settings)
            except (PgbenchError, RedisBenchmarkError, RuntimeError, OSError) as exc:
                results = [Measurement(job.id, scenario.id, name, round_index, {}, error=str(exc))
                           for scenario in job.scenarios]
            if not results:  # a fresh instance that could not start: already recorded as a skip
                for scenario in job.scenarios:
                    progress.step(f"{scenario.id:<20} round {round_index + 1}/{settings.rounds}  {name:<10} "
                                  "skipped (see the report)")
            for result in results:
                result.target, result.round = name, round_index
                measurements.append(result)
                shown = f"ERROR {result.error}" if result.error else _describe(result, unit)
                progress.step(f"{result.scenario:<20} round {round_index + 1}/{settings.rounds}  {name:<10} "
                              f"{shown}")
        target_settings = {name: {"endpoints": {k: {"address": f"{v.address[0]}:{v.address[1]}", "note": v.note}
                                                for k, v in target.endpoints.items()},
                                  "skipped": target.skipped, "settings": target.settings}
                           for name, target in target_set.targets.items()}
    return measurements, target_settings


def _run_fresh(job: Job, name: str, options: TargetOptions, tools: dict[str, ToolStatus], settings: RunSettings,
               skips: list[Skip], round_index: int) -> list[Measurement]:
    """Run ``job`` against a freshly started instance of target ``name``, stopped afterwards."""
    with TargetSet([name], options, tools, {job.endpoint}) as fresh:
        target = fresh.targets[name]
        if job.endpoint not in target.endpoints:
            reason = target.skipped.get(job.endpoint, f"{target.label} was not started")
            if round_index == 0:
                skips.append(Skip(job.id, name, reason))
            return []
        return RUNNERS[job.family](job, target.endpoints[job.endpoint], settings)


def run(settings: RunSettings, *, scenarios: list[str] | None, targets: list[str] | None, out: Path,
        stream: TextIO = sys.stderr) -> dict[str, Any]:
    """The whole run; returns the report (also written to ``out``)."""
    started_at = datetime.now(UTC)
    started = time.monotonic()

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    jobs = select_jobs(scenarios)
    target_names = [name for name in TARGET_NAMES if not targets or name in targets]
    unknown = sorted(set(targets or []) - set(TARGET_NAMES))
    if unknown:
        raise ValueError(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGET_NAMES)}")

    nofile = peers.raise_nofile_limit(max(65536, settings.idle_connections * 2 + 1000))
    if nofile < settings.idle_connections + 1000:
        settings.idle_connections = max(100, nofile - 1000)
        say(f"note: open-file limit is {nofile}; idle connections reduced to {settings.idle_connections}")

    tools = check_tools()
    for status in tools.values():
        if not status.available:
            say(f"missing: {status.missing_reason}")
    advice = install_advice(tools)
    if advice:
        say(f"to measure everything: {advice}")

    skips: list[Skip] = []
    runnable: list[Job] = []
    for job in jobs:
        if job.tool is not None and not tools[job.tool].available:
            skips.append(Skip(job.id, None, tools[job.tool].missing_reason))
        else:
            runnable.append(job)

    with contextlib.ExitStack() as stack:
        if any(job.endpoint == "postgres" for job in runnable):
            reason = _prepare_postgres(settings, tools, stack, say)
            if reason:
                skips += [Skip(job.id, None, reason) for job in runnable if job.endpoint == "postgres"]
                runnable = [job for job in runnable if job.endpoint != "postgres"]
        endpoints = {job.endpoint for job in runnable}
        description = machine.describe(tools, postgres=settings.postgres if "postgres" in endpoints else None)
        description["postgres_origin"] = settings.postgres_origin
        measurements, target_settings = _run_jobs(runnable, settings, tools, target_names, endpoints, skips,
                                                  description, stream, say)

    description["load_average_at_end"] = machine.load_average()
    run_info = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "settings": asdict(settings),
        "command": _command_line(),
    }
    report = build_report(run_info=run_info, machine_description=description, jobs=jobs,
                          measurements=[asdict(m) for m in measurements], skips=[asdict(s) for s in skips],
                          targets=target_settings)
    paths = write_outputs(report, out)
    say(f"done in {Progress.clock(time.monotonic() - started)}; wrote " + ", ".join(str(p) for p in paths))
    return report


def _command_line() -> str:
    """How this run was invoked, as a user would type it (``python -m bench ...``, not the module's path)."""
    program = "python -m bench" if sys.argv[0].endswith("__main__.py") else Path(sys.argv[0]).name
    return shlex.join([program, *sys.argv[1:]]).replace("'python -m bench'", "python -m bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short runs, 2 rounds, 1,000 idle connections "
                        "(about 2-3 minutes); the default is full mode (3 rounds, 10 s pgbench runs, 10,000 idle "
                        "connections; about 25 minutes on 2 cores)")
    parser.add_argument("--scenarios", default="", help="comma-separated families (redis, ring, postgres, idle), "
                        "job or scenario ids, wildcards allowed (default: all)")
    parser.add_argument("--targets", default="", help=f"comma-separated subset of {', '.join(TARGET_NAMES)}")
    parser.add_argument("--out", default="bench-results", help="directory for report.json, report.md and the "
                        "plots (default: ./bench-results)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per scenario (overrides the mode)")
    parser.add_argument("--pg-duration", type=int, default=None, help="seconds per pgbench run (overrides)")
    parser.add_argument("--idle-connections", type=int, default=None, help="idle clients held (overrides)")
    parser.add_argument("--pool-size", type=int, default=20, help="server connections of every PostgreSQL pooler "
                        "in total (default 20)")
    parser.add_argument("--postgres", default=None, help="HOST:PORT of an existing PostgreSQL (trust auth for "
                        "user postgres, max_connections above 64 + 3 pools) measured directly and behind every proxy; "
                        "a database nexus_bench is (re)created there. Default: a dedicated server the harness "
                        "starts (so a 64-client direct run fits next to the poolers' server connections)")
    parser.add_argument("--note", default="", help="a sentence about the conditions of this run, printed with the "
                        "machine description (e.g. other work sharing the machine)")
    parser.add_argument("--redis", default=None, help="HOST:PORT of an existing Redis for the single-node "
                        "scenarios (default: a dedicated redis-server, so benchmark keys never land in a shared one)")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(args: argparse.Namespace) -> int:
    settings = RunSettings.quick() if args.quick else RunSettings.full()
    if args.rounds is not None:
        settings.rounds = max(1, args.rounds)
    if args.pg_duration is not None:
        settings.pg_duration_s = max(1, args.pg_duration)
    if args.idle_connections is not None:
        settings.idle_connections = max(1, args.idle_connections)
    settings.pool_size = args.pool_size
    settings.postgres = _address(args.postgres) if args.postgres else None
    settings.redis = _address(args.redis) if args.redis else None
    settings.note = args.note
    split = [item.strip() for item in args.scenarios.split(",") if item.strip()] or None
    targets = [item.strip() for item in args.targets.split(",") if item.strip()] or None
    try:
        report = run(settings, scenarios=split, targets=targets, out=Path(args.out))
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(BrokenPipeError):
        print(Path(args.out) / "report.md")
    return 0 if report["summaries"] else 1
