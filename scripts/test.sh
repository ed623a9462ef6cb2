#!/usr/bin/env bash
# Set up this machine (scripts/setup-machine.sh) and run the whole default test suite: unit, integration against
# real PostgreSQL and Redis servers, faults, fuzz, and the source checks (ruff, mypy) in tests/meta.
# Micro-benchmarks (tests/benchmarks) are opt-in: pytest tests/benchmarks --benchmark-only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-machine.sh
exec python3 -m pytest "$@"
