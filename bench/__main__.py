"""``python -m bench`` (and ``nexus-fast bench``): the benchmark harness's command line.

    python -m bench [--quick] [--scenarios redis,postgres] [--targets direct,pgbouncer,nexus-1w] [--out DIR]
    python -m bench e2e ...          # the same, by name
    python -m bench <subcommand> ... # any other entry of SUBCOMMANDS

Subcommands are listed in ``SUBCOMMANDS`` as ``name -> (module, help)``. A module either defines
``add_arguments(parser: argparse.ArgumentParser) -> None`` and ``main(args: argparse.Namespace) -> int`` (this
harness builds the parser), or only ``main(argv: list[str]) -> int`` (it parses its own arguments, as
``python -m bench.kernels`` does). It is imported only when its subcommand runs, so the end-to-end harness never
pays for Numba and vice versa. Adding one is a single line in ``SUBCOMMANDS``. Without a subcommand name, the
default (``e2e``) runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "e2e": ("bench.harness", "end to end: nexus-fast beside direct access, PgBouncer, twemproxy and HAProxy"),
    "publish": ("bench.publish", "put a run's tables and plots into docs/benchmarks.md and the README"),
    "kernels": ("bench.kernels", "kernel speed-ups over pure-Python references, eviction hit ratios, detector P/R"),
}
DEFAULT = "e2e"


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in ("-h", "--help") and len(arguments) == 1:
        print(f"usage: {prog} [SUBCOMMAND] [options]\n\nsubcommands (default {DEFAULT}):")
        for name, (_module, summary) in SUBCOMMANDS.items():
            print(f"  {name:<10} {summary}")
        print(f"\n`{prog} SUBCOMMAND --help` lists a subcommand's options; those of {DEFAULT}:\n")
    name = arguments.pop(0) if arguments and arguments[0] in SUBCOMMANDS else DEFAULT
    module_name, summary = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    if not hasattr(module, "add_arguments"):
        return int(module.main(arguments))
    parser = argparse.ArgumentParser(prog=f"{prog} {name}" if name != DEFAULT else prog, description=summary)
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(arguments)))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m bench --help | head`
        sys.exit(0)
