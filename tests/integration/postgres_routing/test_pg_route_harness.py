"""The harness itself: a real primary + hot standby that replicate, pause, stop and come back, and clean up."""

from __future__ import annotations

import os
import time

import pytest

from nexus_fast._testing.postgres import HarnessError, PostgresCluster, _pid_alive, postgres_cluster


def test_standby_replicates_and_replay_pauses(pg_cluster: PostgresCluster) -> None:
    primary, standby = pg_cluster.primary, pg_cluster.standby
    assert primary.execute("SELECT pg_is_in_recovery()") == "f"
    assert standby.execute("SELECT pg_is_in_recovery()") == "t"
    primary.execute("DROP TABLE IF EXISTS harness_t; CREATE TABLE harness_t (x int)")
    pg_cluster.wait_caught_up()
    pg_cluster.pause_replay()
    primary.execute("INSERT INTO harness_t VALUES (1)")
    time.sleep(0.3)
    assert pg_cluster.replay_paused()
    assert standby.execute("SELECT count(*) FROM harness_t") == "0"
    pg_cluster.resume_replay()
    pg_cluster.wait_caught_up()
    assert standby.execute("SELECT count(*) FROM harness_t") == "1"


def test_nodes_stop_kill_and_start_again(pg_cluster: PostgresCluster) -> None:
    standby = pg_cluster.standby
    standby.stop()
    assert not standby.is_running()
    with pytest.raises(HarnessError):
        standby.execute("SELECT 1", timeout=10)
    standby.start()
    assert standby.execute("SELECT 1") == "1"
    standby.kill()
    assert not standby.is_running()
    standby.start()
    assert standby.execute("SELECT pg_is_in_recovery()") == "t"


def test_cluster_is_removed_even_when_the_body_fails() -> None:
    seen: dict[str, object] = {}
    with pytest.raises(ZeroDivisionError), postgres_cluster(standbys=0) as cluster:
        seen["dir"] = cluster.base_dir
        seen["pid"] = cluster.primary.postmaster_pid()
        assert cluster.primary.is_running()
        _ = 1 / 0
    assert not os.path.exists(str(seen["dir"]))
    pid = seen["pid"]
    assert isinstance(pid, int)
    assert not _pid_alive(pid)
