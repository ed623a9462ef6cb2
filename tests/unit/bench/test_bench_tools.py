"""Missing tools are reported with how to install them, and their scenarios and peers are skipped with that
reason, never silently dropped; simulated by running with a PATH that lacks them."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from bench.harness import RunSettings, run
from bench.tools import check_tools, install_advice


def _path_with(tmp_path: Path, tools: list[str]) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        os.symlink(found, bin_dir / tool)
    return str(bin_dir)


def test_bench_check_tools_with_empty_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, []))
    statuses = check_tools()
    assert not any(status.available for status in statuses.values())
    assert statuses["nutcracker"].missing_reason == (
        "nutcracker not found on PATH (the Redis peer (twemproxy)); install it with `apt-get install nutcracker`")
    assert install_advice(statuses) == ("apt-get install haproxy nutcracker pgbouncer postgresql-client "
                                        "redis-server redis-tools")


def test_bench_check_tools_reports_versions():
    statuses = check_tools(["redis-benchmark"])
    if not statuses["redis-benchmark"].available:
        pytest.skip("redis-benchmark is not installed")
    assert statuses["redis-benchmark"].version.startswith("redis-benchmark ")
    assert install_advice(statuses) is None


def _tiny(settings: RunSettings) -> RunSettings:
    settings.rounds = 1
    settings.redis_requests = {1: 2000, 16: 5000}
    return settings


def test_bench_missing_load_generator_skips_its_scenarios(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["redis-server", "redis-cli"]))
    out = tmp_path / "out"
    progress = io.StringIO()
    report = run(_tiny(RunSettings.quick()), scenarios=["postgres"], targets=["direct"], out=out, stream=progress)
    assert "missing: pgbench not found on PATH" in progress.getvalue()
    reasons = {skip["reason"] for skip in report["skips"]}
    assert reasons == {"pgbench not found on PATH (PostgreSQL load generator); install it with "
                       "`apt-get install postgresql-client`"}
    assert {skip["job"] for skip in report["skips"]} == {"pg-select-c16", "pg-select-c64", "pg-tpcb-c16",
                                                         "pg-tpcb-c64", "pg-select-connect-c16",
                                                         "pg-select-connect-c64"}
    text = (out / "report.md").read_text()
    assert "## Skipped" in text and "apt-get install postgresql-client" in text
    assert json.loads((out / "report.json").read_text())["skips"] == report["skips"]


def test_bench_missing_peer_is_skipped_and_the_rest_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["redis-server", "redis-cli", "redis-benchmark"]))
    out = tmp_path / "out"
    progress = io.StringIO()
    report = run(_tiny(RunSettings.quick()), scenarios=["redis-p1"], targets=["direct", "twemproxy"], out=out,
                 stream=progress)
    # The progress display: one line per finished run, with the figure.
    assert progress.getvalue().count("req/s") == 2
    skips = [(skip["job"], skip["target"], skip["reason"]) for skip in report["skips"]]
    assert skips == [("redis-p1", "twemproxy", "nutcracker not found on PATH (the Redis peer (twemproxy)); "
                      "install it with `apt-get install nutcracker`")]
    measured = {(s["scenario"], s["target"]) for s in report["summaries"] if s["metrics"]}
    assert measured == {("redis-set-p1", "direct"), ("redis-get-p1", "direct")}
    assert all(m["values"]["throughput"] > 0 for m in report["measurements"])
    assert (out / "plots" / "redis-get-p1.png").stat().st_size > 1000
    assert "| GET, 50 clients, -P 1, one Redis | direct |" in (out / "report.md").read_text()
