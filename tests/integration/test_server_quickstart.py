"""The README's first command, ``scripts/quickstart.sh --check``, on free ports: real psql and redis-cli through
nexus-fast in front of the machine's PostgreSQL and Redis, /health up, metrics shown, clean stop."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess

import pytest

from nexus_fast._testing.proxy import free_listen

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "nexus.toml")


def test_examples_nexus_toml_is_valid() -> None:
    result = subprocess.run(["python3", "-m", "nexus_fast", "config", "check", EXAMPLE],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_quickstart_check_runs_real_clients_through_the_proxy(tmp_path) -> None:
    missing = [m for m in ("nexus_fast.postgres.plane", "nexus_fast.redis.plane") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"quickstart needs both data planes; missing {missing}")
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    # Same file, every listener moved to a free port so the test never collides with a running demo.
    text = re.sub(r'(listen\s*=\s*)"127\.0\.0\.1:\d+"', lambda m: f'{m.group(1)}"{free_listen()}"', text)
    config = tmp_path / "nexus.toml"
    config.write_text(text)
    result = subprocess.run([os.path.join(ROOT, "scripts", "quickstart.sh"), "--check", "--no-setup",
                             "--config", str(config)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert re.search(r"PostgreSQL \d+\.\d+ .* on ", out), out  # SELECT version() answered through the proxy
    assert "hello from nexus-fast" in out
    assert '"status": "up"' in out
    assert "nexus_worker_info{" in out
    assert re.search(r"nexus-fast at 127\.0\.0\.1:\d+ .*: up", out)  # nexus-fast status, run by the demo
