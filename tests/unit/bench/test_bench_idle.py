"""Idle-connection memory and process-tree CPU accounting, against real processes."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

from bench.idle import hold_idle_connections, startup_message
from bench.processes import process_tree, tree_cpu_seconds, tree_rss_bytes
from nexus_fast._testing import peers


def test_bench_startup_message_bytes():
    message = startup_message("u", "d")
    length, protocol = struct.unpack("!II", message[:8])
    assert length == len(message) and protocol == 196608  # protocol 3.0
    assert message[8:] == b"user\0u\0database\0d\0application_name\0nexus-bench-idle\0\0"


def test_bench_idle_redis_connections_are_held_and_measured():
    with peers.start_redis_server() as node:
        result = hold_idle_connections(host=node.host, port=node.port, pid=node.pid, count=200,
                                       protocol="redis", settle_s=0.2)
        clients = subprocess.run(["redis-cli", "-p", str(node.port), "INFO", "clients"], capture_output=True,
                                 text=True, timeout=10).stdout
    assert result.connections == 200 and result.errors == 0
    assert result.rss_held_bytes >= result.rss_before_bytes > 0
    assert result.bytes_per_connection is not None and result.bytes_per_connection >= 0
    assert "connected_clients:1" in clients  # all closed again: only redis-cli itself


def test_bench_idle_refused_connections_are_counted():
    with peers.start_redis_server(maxclients=10) as node:
        result = hold_idle_connections(host=node.host, port=node.port, pid=node.pid, count=30,
                                       protocol="redis", settle_s=0.1)
    assert result.connections < 30 and result.errors > 0
    assert result.first_error is not None and "max number of clients" in result.first_error


def test_bench_process_tree_cpu_and_memory():
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', "
            "'import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.3: pass\\ntime.sleep(30)']); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(process_tree(parent.pid)) == 2
        # The grandchild's busy loop (0.3 s of CPU) is counted; on a loaded machine it may take a while to get it.
        deadline = time.monotonic() + 20
        while tree_cpu_seconds(parent.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu_seconds(parent.pid) >= 0.25
        assert tree_rss_bytes(parent.pid) > 2 * 1024 * 1024
    finally:
        for pid in reversed(process_tree(parent.pid)):
            subprocess.run(["kill", str(pid)], check=False)
        parent.wait(timeout=10)
