"""The ``nexus-fast`` command line: serve, verify, version, config check/import (more subcommands join here)."""

from __future__ import annotations

import argparse
import sys

from nexus_fast import __version__, _extensions


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"nexus-fast {__version__} (Python {sys.version.split()[0]})")
    for status in _extensions.report():
        kind = "compiled" if status.compiled else "pure-python"
        print(f"  {status.name:<10} {kind:<12} {status.reason if not status.compiled else ''}".rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexus-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_version = sub.add_parser("version", help="print the version and which native modules are compiled")
    p_version.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))
