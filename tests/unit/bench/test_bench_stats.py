"""Median, spread, ratio and percentile arithmetic, and the ratios a report derives from raw measurements."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.report import build_report, markdown, target_checks, write_outputs
from bench.scenarios import select_jobs
from bench.stats import format_ratio, percentile, ratio, summarize


def test_bench_summarize_odd_and_even():
    odd = summarize([3.0, 1.0, 2.0])
    assert odd is not None and (odd.median, odd.minimum, odd.maximum) == (2.0, 1.0, 3.0)
    even = summarize([10.0, 30.0, 20.0, 40.0])
    assert even is not None and even.median == 25.0
    assert even.spread == pytest.approx((40 - 10) / 25)


def test_bench_summarize_drops_missing_values():
    summary = summarize([None, 5.0, math.nan, 7.0])
    assert summary is not None and summary.values == (5.0, 7.0) and summary.median == 6.0
    assert summarize([None, math.nan]) is None


def test_bench_spread_of_zero_median_is_nan():
    summary = summarize([0.0, 0.0])
    assert summary is not None and math.isnan(summary.spread)
    assert summary.as_dict()["spread"] is None


def test_bench_ratio():
    assert ratio(150.0, 100.0) == 1.5
    assert ratio(None, 100.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    assert format_ratio(1.5) == "1.50x" and format_ratio(None) == "n/a"


def test_bench_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_bench_percentile_properties(values, fraction):
    result = percentile(values, fraction)
    assert result in values
    at_or_below = sum(1 for v in values if v <= result)
    assert at_or_below >= fraction * len(values) - 1e-9
    assert sum(1 for v in values if v < result) < fraction * len(values) + 1e-9


def _measurement(scenario, target, round_index, throughput, p99, cpu=None):
    return {"job": scenario, "scenario": scenario, "target": target, "round": round_index,
            "values": {"throughput": throughput, "latency_p99_ms": p99, "cpu_us_per_request": cpu}, "error": None}


def test_bench_report_ratios_to_direct_and_peer():
    jobs = select_jobs(["pg-select-c16"])
    rounds = {"direct": [100.0, 120.0, 110.0], "pgbouncer": [200.0, 220.0, 180.0], "nexus-1w": [300.0, 330.0, 270.0]}
    measurements = [_measurement("pg-select-c16", target, i, value, p99=value / 100, cpu=None if target ==
                                 "direct" else value / 10)
                    for target, values in rounds.items() for i, value in enumerate(values)]
    measurements.append({**_measurement("pg-select-c16", "haproxy", 0, None, None), "values": {},
                         "error": "pgbench exited with status 2: boom"})
    report = build_report(run_info={}, machine_description={}, jobs=jobs, measurements=measurements, skips=[],
                          targets={})
    by_target = {s["target"]: s for s in report["summaries"]}
    nexus = by_target["nexus-1w"]
    assert nexus["metrics"]["throughput"]["median"] == 300.0
    assert nexus["ratios"]["throughput_vs_direct"] == pytest.approx(300 / 110)
    assert nexus["ratios"]["throughput_vs_peer"] == pytest.approx(300 / 200)
    assert nexus["ratios"]["latency_p99_ms_vs_peer"] == pytest.approx(3.0 / 2.0)
    assert nexus["ratios"]["cpu_us_per_request_vs_peer"] == pytest.approx(30 / 20)
    assert "throughput_vs_direct" not in by_target["direct"]["ratios"]
    assert "throughput_vs_peer" not in by_target["pgbouncer"]["ratios"]
    assert by_target["haproxy"]["errors"] == ["pgbench exited with status 2: boom"]
    assert by_target["haproxy"]["metrics"] == {}
    text = markdown({**report, "run": {"started_at": "t", "duration_s": 1, "settings": {"mode": "quick",
                                                                                           "rounds": 3}}})
    assert "| pgbench -S, 16 clients | nexus-fast 1 worker | 300 tps | ±10% | 3.000 | 2.73x | 1.50x | 1.50x | 30.0 | n/a |" \
        in text
    assert "failed: pgbench exited with status 2: boom" in text
    assert "| pgbench -S, 16 clients | PgBouncer 200 tps | 1.50x | n/a | 2.73x | 1.50x |" in text


def test_bench_target_checks():
    jobs = select_jobs(["pg-select-c16", "pg-select-connect-c16", "redis-p1", "idle-postgres"])
    measurements = [
        _measurement("pg-select-c16", "pgbouncer", 0, 100.0, 1.0), _measurement("pg-select-c16", "nexus-1w", 0, 101.0, 1.0),
        _measurement("pg-select-connect-c16", "direct", 0, 10.0, 50.0),
        _measurement("pg-select-connect-c16", "nexus-1w", 0, 99.0, 5.0),
        _measurement("redis-get-p1", "twemproxy", 0, 100.0, 1.0), _measurement("redis-get-p1", "nexus-1w", 0, 120.0, 1.1),
        _measurement("redis-get-p1", "nexus-2w", 0, 130.0, 0.9),
        {"job": "idle-postgres", "scenario": "idle-postgres", "target": "nexus-1w", "round": 0,
         "values": {"bytes_per_connection": 3.5 * 1024}, "error": None},
    ]
    report = build_report(run_info={}, machine_description={}, jobs=jobs, measurements=measurements, skips=[],
                          targets={})
    checks = {(c["scenario"], c["goal"].split(" ")[0]): c for c in target_checks(report)}
    assert checks[("pg-select-c16", "1")]["met"] is True
    assert checks[("pg-select-connect-c16", ">=")]["met"] is False  # 9.9x direct: short of 10x
    assert checks[("redis-get-p1", "1")]["met"] is False  # faster, but p99 1.1x worse
    assert checks[("redis-get-p1", "2")]["met"] is True  # 1.3x >= 1.25x
    assert checks[("redis-set-p1", "1")]["met"] is None  # nothing measured: no verdict
    assert checks[("idle-postgres", "at")]["met"] is True and checks[("idle-postgres", "at")]["shown"] == "3.50 KiB"


def test_bench_plots_are_written(tmp_path):
    jobs = select_jobs(["pg-select-c16", "idle-postgres"])
    measurements = [_measurement("pg-select-c16", target, i, 100.0 + i, 1.0 + i)
                    for target in ("direct", "pgbouncer", "nexus-1w") for i in range(2)]
    measurements.append({"job": "idle-postgres", "scenario": "idle-postgres", "target": "pgbouncer", "round": 0,
                         "values": {"bytes_per_connection": 900.0}, "error": None})
    report = build_report(run_info={"started_at": "t", "duration_s": 1, "settings": {"mode": "quick", "rounds": 2}},
                          machine_description={}, jobs=jobs, measurements=measurements, skips=[], targets={})
    write_outputs(report, tmp_path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["idle-postgres.png", "pg-select-c16.png",
                                                                      "summary.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (tmp_path / "plots").iterdir())
    text = (tmp_path / "report.md").read_text()
    assert "![summary](plots/summary.png)" in text
    assert json.loads((tmp_path / "report.json").read_text())["plots"][0] == "plots/summary.png"
