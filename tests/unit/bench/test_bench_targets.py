"""Targets as the harness starts them: nexus-fast from the generated nexus.toml (checked through each listener),
and a target that cannot start is skipped with its reason instead of failing the run."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from bench import targets as targets_module
from bench.redis_benchmark import RedisBenchmarkError, run_redis_benchmark
from bench.targets import TargetOptions, TargetSet, check_postgres, check_redis
from bench.tools import check_tools
from nexus_fast._testing.ports import port_open, system_postgres_address, system_redis_address


def _options() -> TargetOptions:
    return TargetOptions(postgres=system_postgres_address(), redis=system_redis_address(), database="postgres",
                         pool_size=4)


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql")
def test_bench_nexus_target_starts_from_generated_config_and_answers():
    with TargetSet(["nexus-1w"], _options(), check_tools(), {"postgres", "redis"}) as started:
        target = started.targets["nexus-1w"]
        assert target.skipped == {}
        assert set(target.endpoints) == {"postgres", "redis"}
        assert target.settings["postgres"]["default_pool_size"] == 4
        postgres, redis = target.endpoints["postgres"], target.endpoints["redis"]
        assert postgres.pid == redis.pid and postgres.pid is not None
        assert check_postgres(postgres.address, "postgres") is None and check_redis(redis.address) is None
    assert not port_open(*postgres.address) and not port_open(*redis.address)


def test_bench_target_that_cannot_start_is_skipped_with_the_reason(monkeypatch):
    def broken(*_args, **_kwargs):
        return {"server": {"workers": 0}}

    monkeypatch.setattr(targets_module, "nexus_config", broken)
    logged: list[str] = []
    with TargetSet(["nexus-2w"], _options(), check_tools(), {"redis"}, log=logged.append) as started:
        target = started.targets["nexus-2w"]
        assert target.endpoints == {}
        assert target.skipped["redis"].startswith("the generated nexus.toml is not valid")
        assert "workers must be between 1 and 256" in target.skipped["redis"]
    assert any("skipped" in line for line in logged)


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-benchmark")
def test_bench_hung_or_absent_target_fails_the_run_not_the_harness():
    # A listener that never answers (the kernel completes connections; nobody reads): redis-benchmark would wait
    # forever, the harness gives up after its timeout. Nothing listening: refused before redis-benchmark starts
    # (this redis-benchmark spins forever on a closed port).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RedisBenchmarkError, match="did not finish within 1s"):
            run_redis_benchmark(host="127.0.0.1", port=port, requests=100, clients=2, timeout_s=1.0)
        assert time.monotonic() - started < 10
    with pytest.raises(RedisBenchmarkError, match="nothing accepts connections"):
        run_redis_benchmark(host="127.0.0.1", port=port, requests=100)
