"""Parsing of real pgbench 15 and redis-benchmark 7.0 output (fixtures captured by fixtures/capture.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pgbench import parse_summary, parse_transaction_log, pgbench_argv
from bench.redis_benchmark import parse_csv, redis_benchmark_argv

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_bench_pgbench_select_only_summary():
    summary = parse_summary(fixture("pgbench_select.txt"))
    text = fixture("pgbench_select.txt")
    assert summary.transaction_type == "<builtin: select only>"
    assert summary.clients == 16 and summary.threads == 2 and summary.duration_s == 2
    assert summary.failed == 0
    assert summary.tps_kind == "without initial connection time"
    # Exactly the numbers printed, not approximations.
    assert f"tps = {summary.tps:.6f}" in text
    assert f"number of transactions actually processed: {summary.transactions}" in text
    assert f"latency average = {summary.latency_avg_ms:.3f} ms" in text
    assert summary.connection_time_ms is not None and summary.connection_time_ms > 0


def test_bench_pgbench_tpcb_summary():
    summary = parse_summary(fixture("pgbench_tpcb.txt"))
    assert summary.transaction_type == "<builtin: TPC-B (sort of)>"
    assert summary.transactions > 0 and summary.tps > 0
    # tps ~ transactions / duration (pgbench excludes connection time, so roughly, not exactly).
    assert summary.tps == pytest.approx(summary.transactions / summary.duration_s, rel=0.2)


def test_bench_pgbench_connect_each_summary():
    summary = parse_summary(fixture("pgbench_select_connect.txt"))
    assert summary.tps_kind == "including reconnection times"
    assert "average connection time" in fixture("pgbench_select_connect.txt")
    assert summary.connection_time_ms is not None
    assert summary.latency_stddev_ms is None  # -C runs print no stddev line


def test_bench_pgbench_aborted_run_still_has_a_partial_summary():
    # Exit status 2 ("Run was aborted") is treated as a failure by run_pgbench; the text itself parses.
    summary = parse_summary(fixture("pgbench_aborted.stdout"))
    assert summary.clients == 150
    assert "too many clients" in fixture("pgbench_aborted.stderr")


def test_bench_pgbench_summary_without_tps_is_refused():
    with pytest.raises(ValueError, match="tps"):
        parse_summary(fixture("pgbench_aborted.stderr"))


def test_bench_pgbench_transaction_log():
    lines = fixture("pgbench_log.txt").splitlines()
    latencies = parse_transaction_log(lines)
    assert len(latencies) == len(lines)
    first = lines[0].split()
    assert latencies[0] == int(first[2]) / 1000.0
    assert all(value > 0 for value in latencies)


def test_bench_pgbench_transaction_log_skips_failed_and_short_lines():
    lines = ["3 7 1520 0 1795752824 187256", "3 8 failed 0 1795752824 187300", "garbage", "",
             "4 1 skipped 0 1795752824 187400 0 0"]
    assert parse_transaction_log(lines) == [1.52]


def test_bench_pgbench_argv():
    argv = pgbench_argv(host="h", port=1, database="db", clients=1, duration_s=3, select_only=True,
                        connect_each=True, log_prefix="/tmp/x", sampling_rate=0.5, threads=2)
    assert argv[:7] == ["pgbench", "-h", "h", "-p", "1", "-U", "postgres"]
    assert "-S" in argv and "-C" in argv and "-n" in argv
    assert argv[argv.index("-j") + 1] == "1"  # never more threads than clients
    assert "--sampling-rate=0.5" in argv and argv[-1] == "db"


@pytest.mark.parametrize("name", ["redis_benchmark_p1.csv", "redis_benchmark_p16.csv"])
def test_bench_redis_benchmark_csv(name):
    text = fixture(name)
    rows = parse_csv(text)
    assert list(rows) == ["SET", "GET"]
    for row in rows.values():
        assert row.rps > 0
        assert row.min_latency_ms <= row.p50_latency_ms <= row.p95_latency_ms <= row.p99_latency_ms
        assert row.p99_latency_ms <= row.max_latency_ms
        assert f'"{row.test}","{row.rps:.2f}","{row.avg_latency_ms:.3f}"' in text


def test_bench_redis_benchmark_csv_ignores_warnings_and_reads_two_column_form():
    rows = parse_csv('WARNING: Could not fetch server CONFIG\n"SET","12345.67"\n"GET","23456.78"\n')
    assert rows["SET"].rps == 12345.67 and rows["GET"].p99_latency_ms is None


def test_bench_redis_benchmark_error_output_is_refused():
    with pytest.raises(ValueError):
        parse_csv("WARNING: Could not fetch server CONFIG\nError from server: ERR Connection refused\n")


def test_bench_redis_benchmark_argv_spreads_keys():
    argv = redis_benchmark_argv(host="h", port=2, pipeline=16, requests=10)
    assert argv[argv.index("-P") + 1] == "16" and "-r" in argv and argv[-1] == "--csv"
