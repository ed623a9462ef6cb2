"""Running pgbench against one target and reading its answers.

Throughput and mean latency come from pgbench's own summary (stdout). The p50/p99 come from pgbench's
per-transaction log (``--log``, one line per transaction: ``client_id transaction_no time script_no time_epoch
time_us``, ``time`` being the transaction's elapsed microseconds; see the pgbench documentation, "Per-Transaction
Logging"), sampled with ``--sampling-rate`` so that writing the log costs the client little: the sample is random,
so its percentiles estimate the run's. The aggregated log (``--aggregate-interval``) was not used because it only
carries sums, minimum and maximum per interval, not percentiles.

With ``-C`` pgbench opens a new connection for every transaction; its latency and the transaction log then include
the connection set-up (the point of that scenario), and the summary says "including reconnection times".
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.stats import percentile


class PgbenchError(RuntimeError):
    """pgbench failed; the message carries its exit status and the tail of what it printed."""


@dataclass
class PgbenchSummary:
    """pgbench's end-of-run report, as printed on stdout."""

    tps: float
    transactions: int
    failed: int = 0
    clients: int | None = None
    threads: int | None = None
    duration_s: float | None = None
    latency_avg_ms: float | None = None
    latency_stddev_ms: float | None = None
    connection_time_ms: float | None = None
    # "including reconnection times" (-C) or "without initial connection time".
    tps_kind: str = ""
    transaction_type: str = ""


@dataclass
class PgbenchResult:
    summary: PgbenchSummary
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    log_samples: int
    argv: list[str] = field(default_factory=list)
    stdout: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"summary": asdict(self.summary), "latency_p50_ms": self.latency_p50_ms,
                "latency_p99_ms": self.latency_p99_ms, "log_samples": self.log_samples, "argv": self.argv}


_FLOAT = r"([0-9]+(?:\.[0-9]+)?)"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "tps": re.compile(rf"^tps = {_FLOAT} \((.*)\)$", re.M),
    "transactions": re.compile(r"^number of transactions actually processed: ([0-9]+)", re.M),
    "failed": re.compile(r"^number of failed transactions: ([0-9]+)", re.M),
    "clients": re.compile(r"^number of clients: ([0-9]+)$", re.M),
    "threads": re.compile(r"^number of threads: ([0-9]+)$", re.M),
    "duration": re.compile(rf"^duration: {_FLOAT} s$", re.M),
    "latency_avg": re.compile(rf"^latency average = {_FLOAT} ms$", re.M),
    "latency_stddev": re.compile(rf"^latency stddev = {_FLOAT} ms$", re.M),
    "connection": re.compile(rf"^(?:initial|average) connection time = {_FLOAT} ms$", re.M),
    "type": re.compile(r"^transaction type: (.*)$", re.M),
}


def parse_summary(text: str) -> PgbenchSummary:
    """Read pgbench's (PostgreSQL 15) summary; raises ValueError if the text has no tps line."""
    def find(name: str) -> re.Match[str] | None:
        return _PATTERNS[name].search(text)

    tps = find("tps")
    transactions = find("transactions")
    if tps is None or transactions is None:
        raise ValueError("no 'tps = ...' and 'number of transactions actually processed' lines in pgbench output")

    def number(name: str) -> float | None:
        match = find(name)
        return float(match.group(1)) if match else None

    def integer(name: str) -> int | None:
        match = find(name)
        return int(match.group(1)) if match else None

    kind = find("type")
    return PgbenchSummary(
        tps=float(tps.group(1)), tps_kind=tps.group(2), transactions=int(transactions.group(1)),
        failed=integer("failed") or 0, clients=integer("clients"), threads=integer("threads"),
        duration_s=number("duration"), latency_avg_ms=number("latency_avg"),
        latency_stddev_ms=number("latency_stddev"), connection_time_ms=number("connection"),
        transaction_type=kind.group(1).strip() if kind else "",
    )


def parse_transaction_log(lines: Iterable[str]) -> list[float]:
    """Latencies in milliseconds from per-transaction log lines; failed and skipped transactions are left out
    (their ``time`` field is the word ``failed`` or ``skipped``)."""
    latencies: list[float] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        if fields[2].isdigit():
            latencies.append(int(fields[2]) / 1000.0)
    return latencies


def pgbench_argv(
    *, host: str, port: int, database: str, user: str = "postgres", clients: int, duration_s: int,
    select_only: bool, connect_each: bool, log_prefix: str | None = None, sampling_rate: float = 0.1,
    threads: int = 2,
) -> list[str]:
    argv = ["pgbench", "-h", host, "-p", str(port), "-U", user,
            "-n",  # no VACUUM before the run: it is done once when the database is initialised
            "-c", str(clients), "-j", str(max(1, min(threads, clients))), "-T", str(duration_s)]
    if select_only:
        argv.append("-S")
    if connect_each:
        argv.append("-C")
    if log_prefix is not None:
        argv += ["--log", f"--log-prefix={log_prefix}", f"--sampling-rate={sampling_rate}"]
    argv.append(database)
    return argv


def run_pgbench(
    *, host: str, port: int, database: str, clients: int, duration_s: int, select_only: bool,
    connect_each: bool, user: str = "postgres", sampling_rate: float = 0.1, threads: int = 2,
    timeout_s: float | None = None,
) -> PgbenchResult:
    """One pgbench run; raises PgbenchError when pgbench fails or prints no summary."""
    with tempfile.TemporaryDirectory(prefix="nexus-pgbench-") as logdir:
        prefix = str(Path(logdir) / "txn")
        argv = pgbench_argv(host=host, port=port, database=database, user=user, clients=clients,
                            duration_s=duration_s, select_only=select_only, connect_each=connect_each,
                            log_prefix=prefix, sampling_rate=sampling_rate, threads=threads)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=logdir,
                                  timeout=timeout_s or duration_s * 3 + 30)
        except subprocess.TimeoutExpired as exc:
            raise PgbenchError(f"pgbench did not finish within {exc.timeout:.0f}s (target hung?)") from None
        tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
        if done.returncode != 0:
            raise PgbenchError(f"pgbench exited with status {done.returncode}: {tail or done.stdout[-500:]}")
        try:
            summary = parse_summary(done.stdout)
        except ValueError as exc:
            raise PgbenchError(f"{exc}: {tail}") from None
        latencies: list[float] = []
        for path in sorted(Path(logdir).glob("txn.*")):
            with path.open() as handle:
                latencies += parse_transaction_log(handle)
    return PgbenchResult(
        summary=summary,
        latency_p50_ms=percentile(latencies, 0.50) if latencies else None,
        latency_p99_ms=percentile(latencies, 0.99) if latencies else None,
        log_samples=len(latencies), argv=argv, stdout=done.stdout,
    )


def initialise_database(*, host: str, port: int, database: str, scale: int = 1, user: str = "postgres") -> str:
    """(Re)create ``database`` and load pgbench's tables at ``scale`` (``pgbench -i -s``), then VACUUM ANALYZE.

    Returns pgbench's output. Only ever touches the dedicated benchmark database.
    """
    base = ["-h", host, "-p", str(port), "-U", user]
    exists = subprocess.run(["psql", *base, "-d", "postgres", "-Atc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
                            capture_output=True, text=True, timeout=30)
    if exists.returncode != 0:
        raise PgbenchError(f"cannot reach PostgreSQL at {host}:{port}: {exists.stderr.strip()}")
    if exists.stdout.strip() != "1":
        made = subprocess.run(["psql", *base, "-d", "postgres", "-c", f'CREATE DATABASE "{database}"'],
                              capture_output=True, text=True, timeout=30)
        if made.returncode != 0:
            raise PgbenchError(f"CREATE DATABASE {database} failed: {made.stderr.strip()}")
    init = subprocess.run(["pgbench", *base, "-i", "-s", str(scale), "-q", database],
                          capture_output=True, text=True, timeout=300)
    if init.returncode != 0:
        raise PgbenchError(f"pgbench -i failed: {init.stderr.strip()[-500:]}")
    return init.stderr + init.stdout
