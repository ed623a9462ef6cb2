"""``python -m bench publish DIR``: put a run's results into docs/benchmarks.md and the README.

The run must have been written to ``docs/benchmarks`` (``python -m bench --quick --out docs/benchmarks``) so the
plots the documents link to are the committed ones. In docs/benchmarks.md everything from ``## Latest results`` on
is replaced by the run's tables; in README.md only the text between ``<!-- bench:latest:start -->`` and
``<!-- bench:latest:end -->`` is replaced (the markers are added at the end of the file the first time).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from bench.report import headline_table, markdown

START, END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"


def docs_section(report: dict[str, Any], plots_prefix: str) -> str:
    body = markdown(report).split("\n", 2)[2].replace("\n## ", "\n### ")
    if body.startswith("## "):
        body = "#" + body
    body = body.replace("![summary](plots/summary.png)\n", "")
    body = re.sub(r"!\[([^\]]+)\]\(plots/", rf"![\1]({plots_prefix}/", body)
    command = report["run"].get("command") or "python -m bench --quick --out docs/benchmarks"
    return ("## Latest results\n\n"
            f"Taken with `{command}`; raw numbers in [benchmarks/report.json](benchmarks/report.json). A quick "
            "run has 2 rounds of short runs, on a machine other work may be using: single figures move by the "
            "spread shown, so read the ratios, and run the full mode on a quiet machine before deciding anything."
            f"\n\n![summary]({plots_prefix}/summary.png)\n\n" + body)


def readme_block(report: dict[str, Any]) -> str:
    machine = report["machine"]
    run = report["run"]
    memory = machine.get("memory_bytes") or 0
    return (f"{START}\n"
            f"Latest `{run['settings']['mode']}` run ({run['started_at']}; {machine.get('cpu_model')}, {machine.get('cores')} cores, "
            f"{memory / 2**30:.0f} GiB, {machine.get('os')}; load average {machine.get('load_average_at_start')} "
            f"at start: a machine shared with other work). Ratios to the peer measured in the same run; the full "
            "tables, the machine description and every plot are in [docs/benchmarks.md](docs/benchmarks.md).\n\n"
            + headline_table(report)
            + "\n![nexus-fast throughput against the peer](docs/benchmarks/plots/summary.png)\n"
            f"{END}\n")


def publish(directory: Path, docs: Path, readme: Path) -> None:
    report = json.loads((directory / "report.json").read_text())
    text = docs.read_text()
    marker = text.find("## Latest results")
    head = text if marker < 0 else text[:marker]
    plots_prefix = str((directory / "plots").relative_to(docs.parent)) if directory.is_relative_to(docs.parent) \
        else str(directory / "plots")
    docs.write_text(head.rstrip("\n") + "\n\n" + docs_section(report, plots_prefix))
    text = readme.read_text()
    block = readme_block(report)
    if START in text and END in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    readme.write_text(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", default="docs/benchmarks", help="the run's --out directory")
    parser.add_argument("--docs", default="docs/benchmarks.md")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args(argv)
    publish(Path(args.directory), Path(args.docs), Path(args.readme))
    print(f"updated {args.docs} and {args.readme} from {args.directory}/report.json")
    return 0
