"""Lint and type checks run as part of the test suite (as asyncpg's test__sourcecode.py does)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "nexus_fast", "tests", "bench")
    if result.returncode != 0:
        pytest.fail("ruff:\n" + result.stdout + result.stderr)


def test_mypy_finds_nothing() -> None:
    result = _run("mypy", "--config-file", "pyproject.toml")
    if result.returncode != 0:
        pytest.fail("mypy:\n" + result.stdout + result.stderr)
