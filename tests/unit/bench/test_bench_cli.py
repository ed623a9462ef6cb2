"""The command line: `python -m bench` / `nexus-fast bench`, and subcommands added in one line."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

import bench.__main__ as bench_main
from nexus_fast import cli


def test_bench_unknown_scenario_is_refused_with_the_choices(tmp_path, capsys):
    assert bench_main.main(["--scenarios", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--scenarios 'nope' matches nothing" in err and "pg-select-c16" in err
    assert not (tmp_path / "report.json").exists()


def test_bench_unknown_target_is_refused(tmp_path, capsys):
    assert bench_main.main(["--targets", "pgcat", "--scenarios", "redis", "--out", str(tmp_path)]) == 2
    assert "unknown target(s) pgcat" in capsys.readouterr().err


def test_bench_nexus_fast_bench_delegates(tmp_path, capsys):
    assert cli.main(["bench", "--scenarios", "nope", "--out", str(tmp_path)]) == 2
    assert "matches nothing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", "e2e", "--help"])
    assert exited.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_bench_subcommands_extend_in_one_line(monkeypatch):
    calls: list[object] = []
    own_parser = types.ModuleType("fake_own_parser")
    own_parser.main = lambda argv: calls.append(("argv", argv)) or 0  # type: ignore[attr-defined]
    with_parser = types.ModuleType("fake_with_parser")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, default=1)

    with_parser.add_arguments = add_arguments  # type: ignore[attr-defined]
    with_parser.main = lambda args: calls.append(("args", args.size)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_own_parser", own_parser)
    monkeypatch.setitem(sys.modules, "fake_with_parser", with_parser)
    monkeypatch.setitem(bench_main.SUBCOMMANDS, "own", ("fake_own_parser", "parses itself"))
    monkeypatch.setitem(bench_main.SUBCOMMANDS, "with", ("fake_with_parser", "parsed for it"))
    assert bench_main.main(["own", "--x", "1"]) == 0
    assert bench_main.main(["with", "--size", "5"]) == 3
    assert calls == [("argv", ["--x", "1"]), ("args", 5)]


def test_bench_publish_updates_docs_and_only_the_readme_block(tmp_path):
    from bench.publish import END, START
    from bench.report import build_report, write_outputs
    from bench.scenarios import select_jobs

    jobs = select_jobs(["pg-select-c16"])
    measurements = [{"job": "pg-select-c16", "scenario": "pg-select-c16", "target": target, "round": 0,
                     "values": {"throughput": value, "latency_p99_ms": 1.0}, "error": None}
                    for target, value in (("direct", 100.0), ("pgbouncer", 50.0), ("nexus-1w", 60.0))]
    report = build_report(run_info={"started_at": "T0", "duration_s": 1, "command": "python -m bench --quick",
                                    "settings": {"mode": "quick", "rounds": 1}},
                          machine_description={"cpu_model": "CPU", "cores": 2, "memory_bytes": 2**31, "os": "OS"},
                          jobs=jobs, measurements=measurements, skips=[], targets={})
    out = tmp_path / "docs" / "benchmarks"
    write_outputs(report, out)
    docs = tmp_path / "docs" / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nmethod text\n\n## Latest results\n\nold table\n")
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\n## Benchmarks\n\ncommands\n")
    assert bench_main.main(["publish", str(out), "--docs", str(docs), "--readme", str(readme)]) == 0
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nmethod text\n\n## Latest results\n") and "old table" not in text
    assert "| pgbench -S, 16 clients | PgBouncer 50 tps | 1.20x | n/a | 0.60x | 1.00x |" in text
    assert "![pg-select-c16](benchmarks/plots/pg-select-c16.png)" in text
    first = readme.read_text()
    assert first.startswith("# project\n\n## Benchmarks\n\ncommands\n\n" + START)
    assert "CPU, 2 cores, 2 GiB" in first and first.endswith(END + "\n")
    # Publishing again replaces the block instead of adding a second one.
    bench_main.main(["publish", str(out), "--docs", str(docs), "--readme", str(readme)])
    assert readme.read_text() == first
