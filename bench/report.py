"""The report of a run: every raw number and the summaries as JSON, a Markdown table, PNG plots.

Summaries: for each scenario and target, the median and range over rounds of every figure (throughput, mean/p50/p99
latency, CPU per request, memory per idle connection). Ratios: the median of a target divided by the median of
``direct`` and by the median of the scenario's peer (twemproxy or PgBouncer), both measured in the same run.
For throughput a ratio above 1 is better; for latency, CPU and memory a ratio below 1 is better.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.scenarios import Job
from bench.stats import format_ratio, ratio, summarize
from bench.targets import TARGET_LABELS, TARGET_NAMES

METRICS = ("throughput", "latency_avg_ms", "latency_p50_ms", "latency_p99_ms", "cpu_us_per_request",
           "server_cpu_us_per_request", "bytes_per_connection")


def summarise(scenario_id: str, target: str, measurements: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Median/range of every metric over the rounds of one (scenario, target); errors counted and kept."""
    rows = [m for m in measurements if m["scenario"] == scenario_id and m["target"] == target]
    metrics: dict[str, Any] = {}
    for name in METRICS:
        summary = summarize(m["values"].get(name) for m in rows if not m.get("error"))
        if summary is not None:
            metrics[name] = summary.as_dict()
    return {"scenario": scenario_id, "target": target, "rounds": len(rows),
            "errors": [m["error"] for m in rows if m.get("error")], "metrics": metrics}


def _median(summary: dict[str, Any] | None, metric: str) -> float | None:
    if summary is None or metric not in summary["metrics"]:
        return None
    value = summary["metrics"][metric]["median"]
    return float(value) if value is not None else None


def build_report(*, run_info: dict[str, Any], machine_description: dict[str, Any], jobs: list[Job],
                 measurements: list[dict[str, Any]], skips: list[dict[str, Any]],
                 targets: dict[str, Any]) -> dict[str, Any]:
    scenarios = []
    summaries = []
    for job in jobs:
        for scenario in job.scenarios:
            scenarios.append({"id": scenario.id, "family": scenario.family, "title": scenario.title,
                              "metric": scenario.metric, "unit": scenario.unit,
                              "higher_is_better": scenario.higher_is_better, "peer": job.peer, "job": job.id,
                              "targets": list(job.targets)})
            by_target = {}
            for target in job.targets:
                if any(m["scenario"] == scenario.id and m["target"] == target for m in measurements):
                    by_target[target] = summarise(scenario.id, target, measurements)
            for target, summary in by_target.items():
                ratios: dict[str, float | None] = {}
                for metric in (scenario.metric, "latency_p99_ms", "cpu_us_per_request", "server_cpu_us_per_request"):
                    value = _median(summary, metric)
                    if value is None:
                        continue
                    if target != "direct":
                        ratios[f"{metric}_vs_direct"] = ratio(value, _median(by_target.get("direct"), metric))
                    if target != job.peer:
                        ratios[f"{metric}_vs_peer"] = ratio(value, _median(by_target.get(job.peer), metric))
                summary["ratios"] = ratios
                summary["peer"] = job.peer
                summaries.append(summary)
    return {"run": run_info, "machine": machine_description, "targets": targets, "scenarios": scenarios,
            "summaries": summaries, "skips": skips, "measurements": measurements}


# ---------------------------------------------------------------------------------------------------------------
# The product's performance targets (PRODUCT.md section 5), checked on this run's medians


def _ratio_of(report: dict[str, Any], scenario: str, target: str, key: str) -> float | None:
    for summary in report["summaries"]:
        if summary["scenario"] == scenario and summary["target"] == target:
            value = summary.get("ratios", {}).get(key)
            return float(value) if value is not None else None
    return None


def _kib(report: dict[str, Any], scenario: str, target: str) -> float | None:
    for summary in report["summaries"]:
        if summary["scenario"] == scenario and summary["target"] == target:
            value = _median(summary, "bytes_per_connection")
            return value / 1024 if value is not None else None
    return None


def target_checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (goal, scenario): the measured ratio or figure, the goal, and whether this run met it (None
    when a figure is missing)."""
    rows: list[dict[str, Any]] = []

    def add(goal: str, scenario: str, measured: float | None, met: bool | None, shown: str) -> None:
        rows.append({"goal": goal, "scenario": scenario, "measured": measured, "met": met, "shown": shown})

    ids = {scenario["id"]: scenario for scenario in report["scenarios"]}
    for scenario_id, scenario in ids.items():
        family = scenario["family"]
        if family in ("redis", "ring"):
            tput = _ratio_of(report, scenario_id, "nexus-1w", "throughput_vs_peer")
            p99 = _ratio_of(report, scenario_id, "nexus-1w", "latency_p99_ms_vs_peer")
            met = None if tput is None or p99 is None else tput >= 1.0 and p99 <= 1.0
            add("1 worker >= twemproxy throughput, p99 no worse", scenario_id, tput, met,
                f"{format_ratio(tput)} throughput, {format_ratio(p99)} p99")
            two = _ratio_of(report, scenario_id, "nexus-2w", "throughput_vs_peer")
            add("2 workers well ahead of twemproxy (>= 1.25x, our reading of 'well ahead')", scenario_id, two,
                None if two is None else two >= 1.25, format_ratio(two))
        elif family == "postgres" and "connect" not in scenario_id:
            tput = _ratio_of(report, scenario_id, "nexus-1w", "throughput_vs_peer")
            add("1 worker >= PgBouncer tps", scenario_id, tput, None if tput is None else tput >= 1.0,
                format_ratio(tput))
        elif family == "postgres":
            tput = _ratio_of(report, scenario_id, "nexus-1w", "throughput_vs_direct")
            add(">= 10x direct PostgreSQL with a connection per transaction", scenario_id, tput,
                None if tput is None else tput >= 10.0, format_ratio(tput))
        elif family == "idle":
            kib = _kib(report, scenario_id, "nexus-1w")
            add("at most a few KiB per idle client connection (<= 4 KiB)", scenario_id, kib,
                None if kib is None else kib <= 4.0, "n/a" if kib is None else f"{kib:.2f} KiB")
    return rows


def headline_table(report: dict[str, Any]) -> str:
    """A compact Markdown table: per scenario, the peer's figure and nexus-fast's as ratios to it and to direct."""
    lines = ["| scenario | peer | nexus-fast 1 worker vs peer | 2 workers vs peer | 1 worker vs direct | p99, 1 worker vs peer |",
             "|---|---:|---:|---:|---:|---:|"]
    for scenario in report["scenarios"]:
        sid, metric = scenario["id"], scenario["metric"]
        peer_value = None
        for summary in report["summaries"]:
            if summary["scenario"] == sid and summary["target"] == scenario["peer"]:
                peer_value = _median(summary, metric)
        if metric == "bytes_per_connection":
            shown = "n/a" if peer_value is None else f"{peer_value / 1024:.2f} KiB/conn"
        else:
            shown = "n/a" if peer_value is None else f"{peer_value:,.0f} {scenario['unit']}"
        lines.append(
            f"| {scenario['title']} | {TARGET_LABELS.get(scenario['peer'], scenario['peer'])} {shown} "
            f"| {format_ratio(_ratio_of(report, sid, 'nexus-1w', f'{metric}_vs_peer'))} "
            f"| {format_ratio(_ratio_of(report, sid, 'nexus-2w', f'{metric}_vs_peer'))} "
            f"| {format_ratio(_ratio_of(report, sid, 'nexus-1w', f'{metric}_vs_direct'))} "
            f"| {format_ratio(_ratio_of(report, sid, 'nexus-1w', 'latency_p99_ms_vs_peer'))} |")
    lines += ["", "Throughput ratios: above 1x is better. p99 and idle memory per connection: below 1x is better."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _spread(summary: dict[str, Any], metric: str) -> str:
    data = summary["metrics"].get(metric)
    if not data or data["spread"] is None or data["n"] < 2:
        return "-"
    return f"±{data['spread'] * 50:.0f}%"


def machine_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    run = report["run"]
    memory = m.get("memory_bytes")
    tools = m.get("tools", {})
    versions = "; ".join(f"{info['version']}" for name, info in tools.items()
                         if info.get("version") and name not in ("psql",))
    native = m.get("nexus_fast", {}).get("native_modules", {})
    lines = [
        f"- Machine: {m.get('cpu_model')}, {m.get('cores')} cores, "
        f"{_number(memory / 2**30, 1) if memory else '?'} GiB RAM; {m.get('os')}, kernel {m.get('kernel')}; "
        f"Python {m.get('python')}.",
        f"- Servers: PostgreSQL {m.get('postgres_server') or 'n/a'}, Redis {m.get('redis_server') or 'n/a'}.",
        f"- Tools: {versions}.",
        f"- nexus-fast {m.get('nexus_fast', {}).get('version')}; native modules: "
        + (", ".join(f"{k} {v}" for k, v in native.items()) or "none") + ".",
        f"- Run: {run['started_at']}, {run['settings']['mode']} mode, {run['settings']['rounds']} rounds, "
        f"{run['duration_s']} s; load average at start {m.get('load_average_at_start')}, at end "
        f"{m.get('load_average_at_end')} (other work on the machine competes for its {m.get('cores')} cores).",
    ]
    if run["settings"].get("note"):
        lines.append(f"- Note: {run['settings']['note']}")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# nexus-fast benchmark report", ""]
    lines += machine_lines(report)
    lines += ["", "Medians over the rounds; spread is ± half the range (max - min) as a share of the median. "
              "Ratios divide a target's median by direct access's and by the peer's (twemproxy for Redis, "
              "PgBouncer for PostgreSQL), both measured in this run: above 1x is better for throughput, below "
              "1x is better for p99, CPU and memory. CPU is the target's process CPU time per request "
              "(per transaction for pgbench); server CPU is that of the PostgreSQL or Redis servers behind it "
              "(when the harness started them), which pooling and pipelining can save.", ""]
    lines += ["## Headline: nexus-fast against the peer", "", headline_table(report)]
    checks = target_checks(report)
    if checks:
        lines += ["## Against the performance targets (PRODUCT.md section 5)", "",
                  "| goal | scenario | this run | met |", "|---|---|---:|---|"]
        for check in checks:
            met = {True: "yes", False: "no", None: "n/a"}[check["met"]]
            lines.append(f"| {check['goal']} | {check['scenario']} | {check['shown']} | {met} |")
        lines.append("")
    summaries = report["summaries"]
    families = [("redis", "Redis, one node"), ("ring", "Redis, 3-node ring"), ("postgres", "PostgreSQL"),
                ("idle", "Idle client connections")]
    for family, heading in families:
        scenarios = [s for s in report["scenarios"] if s["family"] == family]
        if not scenarios:
            continue
        lines += [f"## {heading}", ""]
        if family == "idle":
            lines += ["| scenario | target | KiB per connection | spread | vs peer |", "|---|---|---:|---:|---:|"]
        else:
            lines += ["| scenario | target | throughput | spread | p99 ms | vs direct | vs peer | p99 vs peer "
                      "| CPU us/req | server CPU us/req |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for scenario in scenarios:
            rows = [s for s in summaries if s["scenario"] == scenario["id"]]
            rows.sort(key=lambda s: TARGET_NAMES.index(s["target"]) if s["target"] in TARGET_NAMES else 99)
            for summary in rows:
                label = TARGET_LABELS.get(summary["target"], summary["target"])
                if family == "ring" and summary["target"] == "direct":
                    label = "direct (one node)"
                r = summary.get("ratios", {})
                if not summary["metrics"]:
                    error = summary["errors"][0] if summary["errors"] else "no result"
                    cells = 3 if family == "idle" else 8
                    lines.append(f"| {scenario['title']} | {label} | failed: {error[:120]} |" + " |" * (cells - 1))
                    continue
                if family == "idle":
                    per = _median(summary, "bytes_per_connection")
                    lines.append(f"| {scenario['title']} | {label} | {_number(per / 1024 if per is not None else None, 2)} "
                                 f"| {_spread(summary, 'bytes_per_connection')} "
                                 f"| {format_ratio(r.get('bytes_per_connection_vs_peer'))} |")
                    continue
                unit = scenario["unit"]
                lines.append(
                    f"| {scenario['title']} | {label} | {_number(_median(summary, 'throughput'))} {unit} "
                    f"| {_spread(summary, 'throughput')} | {_number(_median(summary, 'latency_p99_ms'), 3)} "
                    f"| {format_ratio(r.get('throughput_vs_direct'))} | {format_ratio(r.get('throughput_vs_peer'))} "
                    f"| {format_ratio(r.get('latency_p99_ms_vs_peer'))} "
                    f"| {_number(_median(summary, 'cpu_us_per_request'), 1)} "
                    f"| {_number(_median(summary, 'server_cpu_us_per_request'), 1)} |")
        lines.append("")
    if report["skips"]:
        lines += ["## Skipped", ""]
        seen = set()
        for skip in report["skips"]:
            key = (skip["job"], skip["target"], skip["reason"])
            if key in seen:
                continue
            seen.add(key)
            who = TARGET_LABELS.get(skip["target"], skip["target"]) if skip["target"] else "all targets"
            lines.append(f"- {skip['job']} / {who}: {skip['reason']}")
        lines.append("")
    errors = [m for m in report["measurements"] if m.get("error")]
    if errors:
        lines += ["## Failed runs", ""]
        lines += [f"- {m['scenario']} / {m['target']} round {m['round'] + 1}: {m['error'][:300]}" for m in errors]
        lines.append("")
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Plots


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """One PNG per scenario: throughput and p99 per target (bars are medians, whiskers the range)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario in report["scenarios"]:
        rows = [s for s in report["summaries"] if s["scenario"] == scenario["id"] and s["metrics"]]
        rows.sort(key=lambda s: TARGET_NAMES.index(s["target"]) if s["target"] in TARGET_NAMES else 99)
        if not rows:
            continue
        labels = [TARGET_LABELS.get(s["target"], s["target"]) for s in rows]
        panels = ([("bytes_per_connection", "bytes per idle connection")] if scenario["family"] == "idle"
                  else [("throughput", scenario["unit"]), ("latency_p99_ms", "p99 latency (ms)")])
        figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
        for axis, (metric, ylabel) in zip(axes[0], panels, strict=True):
            medians, low, high = [], [], []
            for summary in rows:
                data = summary["metrics"].get(metric)
                if data is None:
                    medians.append(0.0)
                    low.append(0.0)
                    high.append(0.0)
                else:
                    medians.append(data["median"])
                    low.append(data["median"] - data["min"])
                    high.append(data["max"] - data["median"])
            colours = ["#d62728" if s["target"].startswith("nexus") else "#7f7f7f" if s["target"] == "direct"
                       else "#1f77b4" for s in rows]
            axis.bar(range(len(rows)), medians, yerr=[low, high], color=colours, capsize=4)
            axis.set_xticks(range(len(rows)))
            axis.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
            axis.set_ylabel(ylabel)
            axis.grid(axis="y", alpha=0.3)
        figure.suptitle(scenario["title"], fontsize=10)
        figure.tight_layout()
        path = directory / f"{scenario['id']}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    summary_path = _plot_summary(report, directory, plt)
    if summary_path is not None:
        written.insert(0, summary_path)
    return written


def _plot_summary(report: dict[str, Any], directory: Path, plt: Any) -> Path | None:
    """summary.png: nexus-fast's throughput as a ratio to the peer's, one row per load scenario."""
    rows: list[tuple[str, float | None, float | None]] = []
    for scenario in report["scenarios"]:
        if scenario["metric"] != "throughput":
            continue
        key = "throughput_vs_peer"
        one = _ratio_of(report, scenario["id"], "nexus-1w", key)
        two = _ratio_of(report, scenario["id"], "nexus-2w", key)
        if one is not None or two is not None:
            rows.append((f"{scenario['id']} (vs {scenario['peer']})", one, two))
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.2))
    positions = range(len(rows))
    axis.barh([p + 0.2 for p in positions], [r[1] or 0 for r in rows], height=0.4, color="#d62728",
              label="nexus-fast 1 worker")
    axis.barh([p - 0.2 for p in positions], [r[2] or 0 for r in rows], height=0.4, color="#ff9896",
              label="nexus-fast 2 workers")
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.set_yticks(list(positions))
    axis.set_yticklabels([r[0] for r in rows], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("throughput: nexus-fast's median / the peer's median (right of 1 = faster)", fontsize=8)
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path = directory / "summary.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """report.json, report.md and plots/*.png under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    report["target_checks"] = target_checks(report)
    report["plots"] = [str(path.relative_to(out)) for path in plot(report, out / "plots")]
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md_path = out / "report.md"
    md_path.write_text(markdown(report))
    return [json_path, md_path, out / "plots"]
