"""Running redis-benchmark against one target and reading its CSV.

redis-benchmark 7.0 with ``--csv`` prints one header line and one row per test::

    "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    "SET","88495.58","0.296","0.072","0.295","0.343","0.439","1.135"

so throughput and the latency percentiles come straight from the tool (its HdrHistogram), no log needed. Warnings
("Could not fetch server CONFIG", printed when a proxy refuses CONFIG GET) go to stderr and are kept, not fatal.

Two behaviours of this redis-benchmark shape the runner: an error reply to a benchmarked command ("Error from
server: ...") makes it exit 1 after the header, and when nothing listens on the port it spins forever; so the
port is checked first and every run has a hard timeout.
"""

from __future__ import annotations

import csv
import io
import subprocess
from dataclasses import asdict, dataclass, field

from nexus_fast._testing.ports import port_open


class RedisBenchmarkError(RuntimeError):
    """redis-benchmark failed; the message says how."""


@dataclass
class RedisBenchmarkRow:
    """One test's line of the CSV (latencies in milliseconds)."""

    test: str
    rps: float
    avg_latency_ms: float | None = None
    min_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    max_latency_ms: float | None = None


@dataclass
class RedisBenchmarkResult:
    rows: dict[str, RedisBenchmarkRow]
    requests_per_test: int
    argv: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"rows": {name: asdict(row) for name, row in self.rows.items()},
                "requests_per_test": self.requests_per_test, "argv": self.argv, "warnings": self.warnings}


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    return float(text)


def parse_csv(text: str) -> dict[str, RedisBenchmarkRow]:
    """Rows keyed by test name (``SET``, ``GET``, ...); raises ValueError on text without the CSV header.

    Lines without the header (a two-column ``"SET","12345.67"`` form) are read too, with the latencies left empty.
    """
    lines = [line for line in text.splitlines() if line.startswith('"')]
    if not lines:
        raise ValueError("no CSV lines in redis-benchmark output")
    if lines[0].startswith('"test"'):
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        rows: dict[str, RedisBenchmarkRow] = {}
        for record in reader:
            name = record["test"]
            rows[name] = RedisBenchmarkRow(
                test=name, rps=float(record["rps"]),
                avg_latency_ms=_number(record.get("avg_latency_ms")),
                min_latency_ms=_number(record.get("min_latency_ms")),
                p50_latency_ms=_number(record.get("p50_latency_ms")),
                p95_latency_ms=_number(record.get("p95_latency_ms")),
                p99_latency_ms=_number(record.get("p99_latency_ms")),
                max_latency_ms=_number(record.get("max_latency_ms")),
            )
        return rows
    rows = {}
    for fields in csv.reader(io.StringIO("\n".join(lines))):
        if len(fields) >= 2:
            rows[fields[0]] = RedisBenchmarkRow(test=fields[0], rps=float(fields[1]))
    return rows


def redis_benchmark_argv(
    *, host: str, port: int, tests: str = "set,get", clients: int = 50, requests: int = 100000,
    pipeline: int = 1, keyspace: int = 100000, data_size: int = 3,
) -> list[str]:
    # -r spreads keys over a keyspace so a ring's nodes all get traffic (without it every request hits one key).
    return ["redis-benchmark", "-h", host, "-p", str(port), "-c", str(clients), "-n", str(requests),
            "-P", str(pipeline), "-t", tests, "-r", str(keyspace), "-d", str(data_size), "--csv"]


def run_redis_benchmark(
    *, host: str, port: int, tests: str = "set,get", clients: int = 50, requests: int = 100000,
    pipeline: int = 1, keyspace: int = 100000, timeout_s: float = 120.0,
) -> RedisBenchmarkResult:
    """One redis-benchmark run (all ``tests`` in sequence, SET before GET); raises RedisBenchmarkError."""
    if not port_open(host, port, timeout=1.0):
        raise RedisBenchmarkError(f"nothing accepts connections on {host}:{port}")
    argv = redis_benchmark_argv(host=host, port=port, tests=tests, clients=clients, requests=requests,
                                pipeline=pipeline, keyspace=keyspace)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RedisBenchmarkError(f"redis-benchmark did not finish within {timeout_s:.0f}s (target hung?)") from None
    messages = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    errors = [line for line in messages if not line.startswith("WARNING")]
    if done.returncode != 0:
        raise RedisBenchmarkError(f"redis-benchmark exited with status {done.returncode}: "
                                  f"{'; '.join(errors[-3:]) or done.stdout[-300:]}")
    try:
        rows = parse_csv(done.stdout)
    except ValueError as exc:
        raise RedisBenchmarkError(f"{exc}: {'; '.join(messages[-3:])}") from None
    wanted = [name.upper() for name in tests.split(",")]
    missing = [name for name in wanted if name not in rows]
    if missing:
        raise RedisBenchmarkError(f"redis-benchmark printed no row for {', '.join(missing)}: {'; '.join(errors[-3:])}")
    return RedisBenchmarkResult(rows=rows, requests_per_test=requests, argv=argv,
                                warnings=[line for line in messages if line.startswith("WARNING")])
