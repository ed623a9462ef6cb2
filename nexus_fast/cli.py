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


def _config_error(exc: Exception) -> int:
    print(str(exc), file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.server.supervisor import serve

    try:
        return serve(args.config, args.workers)
    except ConfigError as exc:
        return _config_error(exc)


def cmd_config_check(args: argparse.Namespace) -> int:
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.config.load import load_config
    from nexus_fast.config.render import to_toml

    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        return _config_error(exc)
    sys.stdout.write(to_toml(loaded, redact=not args.show_secrets))
    print(f"{args.file}: ok", file=sys.stderr)
    return 0


def cmd_config_import(args: argparse.Namespace) -> int:
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.config.load import load_config
    from nexus_fast.config.render import to_toml

    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        return _config_error(exc)
    for warning in loaded.warnings:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    sys.stdout.write(to_toml(loaded))
    return 0


def cmd_config_docs(_args: argparse.Namespace) -> int:
    from nexus_fast.config.reference import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def cmd_config_diff(args: argparse.Namespace) -> int:
    from nexus_fast.config.drift import run_diff

    return run_diff(args.file, args.against, sys.stdout)


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from bench.__main__ import main as bench_main
    except ImportError as exc:
        print(f"nexus-fast bench needs the bench/ package of the source tree: {exc}", file=sys.stderr)
        return 2
    return bench_main(list(args.bench_args), prog="nexus-fast bench")


def cmd_status(args: argparse.Namespace) -> int:
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.config.load import load_config
    from nexus_fast.server.status import run_status

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        return _config_error(exc)
    return run_status(loaded.config, loaded.digest, sys.stdout)


def cmd_verify(args: argparse.Namespace) -> int:
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.config.load import load_config
    from nexus_fast.server.verify import run_verify

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        return _config_error(exc)
    return run_verify(loaded.config, args.timeout)


def _worker_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a worker count between 1 and 256")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexus-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_version = sub.add_parser("version", help="print the version and which native modules are compiled")
    p_version.set_defaults(func=cmd_version)

    p_serve = sub.add_parser("serve", help="run the proxy (nexus.toml, pgbouncer.ini or nutcracker.yml)")
    p_serve.add_argument("-c", "--config", required=True, help="config file")
    p_serve.add_argument("--workers", type=_worker_count, default=None, help="override server.workers (1-256)")
    p_serve.set_defaults(func=cmd_serve)

    p_verify = sub.add_parser("verify", help="check every listener and backend of a config answers")
    p_verify.add_argument("-c", "--config", required=True, help="config file")
    p_verify.add_argument("--timeout", type=float, default=3.0, help="seconds per check (default 3)")
    p_verify.set_defaults(func=cmd_verify)

    p_status = sub.add_parser("status", help="health, config digest, last reload and drift of the running instance")
    p_status.add_argument("-c", "--config", required=True, help="config file of the running instance")
    p_status.set_defaults(func=cmd_status)

    p_config = sub.add_parser("config", help="check, import or document configuration")
    config_sub = p_config.add_subparsers(dest="config_command", required=True)
    p_check = config_sub.add_parser("check", help="validate FILE and print the effective config as TOML")
    p_check.add_argument("file")
    p_check.add_argument("--show-secrets", action="store_true", help="print passwords instead of *****")
    p_check.set_defaults(func=cmd_config_check)
    p_import = config_sub.add_parser("import", help="print the nexus.toml equivalent of a pgbouncer.ini or nutcracker.yml")
    p_import.add_argument("file")
    p_import.set_defaults(func=cmd_config_import)
    p_diff = config_sub.add_parser("diff", help="list keys that differ between FILE and the running instance (drift)")
    p_diff.add_argument("file")
    p_diff.add_argument("--against", default=None,
                        help="admin URL of the running instance (default: FILE's admin.listen) or another config file")
    p_diff.set_defaults(func=cmd_config_diff)
    p_docs = config_sub.add_parser("docs", help="print the config reference (docs/config.md) generated from the schema")
    p_docs.set_defaults(func=cmd_config_docs)

    # Everything after "bench" belongs to the harness's own parser (prefix_chars "+" keeps argparse from reading
    # --quick etc. here); see bench/__main__.py.
    p_bench = sub.add_parser("bench", help="run the benchmark harness (python -m bench; --help for its options)",
                             add_help=False, prefix_chars="+")
    p_bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    p_bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))
