"""The process shell end to end: nexus-fast serve as a subprocess with a real TCP plane (tests/integration/echo_plane).

Covers the issue's "done when" for the shell: SIGTERM drains an in-flight request before exit, SIGHUP with a
broken file leaves the old config serving (and a good one applies), two workers accept on one port, a worker that
dies is replaced, and the admin endpoints answer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from nexus_fast._testing.ports import free_port
from nexus_fast._testing.proxy import NexusProcess, NexusStartError, free_listen

EXTRA = "tests.integration.echo_plane:create_plane"


def ask(port: int, line: str, timeout: float = 10.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(line.encode() + b"\n")
        return sock.makefile("rb").readline().decode().strip()


def echo_nexus(config: dict | None = None, workers: int | None = None) -> tuple[NexusProcess, int]:
    port = free_port()
    env = {"NEXUS_FAST_EXTRA_PLANES": EXTRA, "NEXUS_ECHO_LISTEN": f"127.0.0.1:{port}"}
    base = {"server": {"shutdown_timeout": "10s"}, "admin": {"health_check_interval": "1s"}}
    for key, value in (config or {}).items():
        base[key] = {**base.get(key, {}), **value}
    return NexusProcess(base, workers=workers, env=env), port


def test_sigterm_drains_an_in_flight_request_then_exits_zero() -> None:
    nexus, port = echo_nexus()
    with nexus:
        assert ask(port, "ping") == "ping"
        answer: list[str] = []
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"HOLD 1.5\n")
        replies = sock.makefile("rb")
        assert replies.readline() == b"holding\n"  # the request is in flight inside the plane
        reader = threading.Thread(target=lambda: answer.append(replies.readline().decode().strip()))
        reader.start()
        sent = time.monotonic()
        nexus.signal(15)
        nexus.wait_for_event("draining")
        # Draining: the listener no longer accepts new connections and /ready tells load balancers to move on.
        with pytest.raises(OSError):
            ask(port, "late", timeout=1)
        status, body = nexus.get("/ready")
        assert status == 503 and body["status"] == "not ready"
        code = nexus.wait(15)
        reader.join(5)
        sock.close()
        assert answer == ["done"], nexus.logs
        assert code == 0, nexus.logs
        assert time.monotonic() - sent >= 1.0  # it waited for the request instead of cutting it
        assert nexus.events("stopped")


def test_sighup_broken_file_keeps_old_config_and_good_file_applies() -> None:
    nexus, port = echo_nexus()
    with nexus:
        status, before = nexus.get("/config")
        assert status == 200 and before["last_reload"]["status"] == "none"
        assert ask(port, "INTERVAL") == "1s"

        # A bare number where a duration needs a unit: the whole file is refused.
        nexus.write_config(f'[server]\nshutdown_timeout = "10s"\n[admin]\nlisten = "{nexus.admin_listen}"\n'
                           "health_check_interval = 5\n")
        nexus.reload()
        nexus.wait_for_event("reload_rejected")
        status, after = nexus.get("/config")
        assert after["last_reload"]["status"] == "rejected"
        assert "admin.health_check_interval" in after["last_reload"]["reason"]
        assert after["digest"] == before["digest"]
        assert ask(port, "INTERVAL") == "1s"  # the old config still serves
        assert nexus.get("/ready")[0] == 200
        assert "nexus_config_last_reload_successful 0.0" in nexus.get("/metrics")[1]

        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "health_check_interval": "3s"}})
        nexus.reload()
        nexus.wait_for_event("reload_applied")
        status, applied = nexus.get("/config")
        assert applied["last_reload"]["status"] == "applied"
        assert applied["digest"] != before["digest"]
        assert applied["config"]["admin"]["health_check_interval"] == "3s"
        assert ask(port, "INTERVAL") == "3s"
        metrics = nexus.get("/metrics")[1]
        assert 'nexus_config_reloads_total{result="applied"} 1.0' in metrics
        assert 'nexus_config_reloads_total{result="rejected"} 1.0' in metrics
        assert "nexus_config_last_reload_successful 1.0" in metrics
        assert f'nexus_config_info{{digest="{applied["digest"]}"}} 1.0' in metrics
        assert before["digest"] not in metrics


def test_sighup_refused_by_a_plane_keeps_the_old_config() -> None:
    nexus, port = echo_nexus()
    with nexus:
        _, before = nexus.get("/config")
        # The echo plane refuses health_check_timeout = 123ms (tests/integration/echo_plane.REFUSED_TIMEOUT).
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "health_check_interval": "2s",
                                      "health_check_timeout": "123ms"}})
        nexus.reload()
        nexus.wait_for_event("reload_rejected")
        _, after = nexus.get("/config")
        assert "refused" in after["last_reload"]["reason"]
        assert after["digest"] == before["digest"]
        assert ask(port, "INTERVAL") == "1s"


def test_two_workers_accept_on_one_port() -> None:
    nexus, port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        pids: set[int] = set()
        asked = 0
        deadline = time.monotonic() + 20
        while (len(pids) < 2 or asked < 20) and time.monotonic() < deadline:
            pids.add(int(ask(port, "PID")))
            asked += 1
        assert len(pids) == 2, f"one worker served every connection: {pids}"
        assert nexus.pid not in pids  # the supervisor forks; workers serve
        started = {int(e["worker_pid"]) for e in nexus.events("worker_started")}
        assert pids == started
        # The admin port is shared the same way: each worker answers with its own pid.
        admin_pids = set()
        deadline = time.monotonic() + 20
        while len(admin_pids) < 2 and time.monotonic() < deadline:
            admin_pids.add(nexus.get("/health")[1]["pid"])
        assert admin_pids == pids
        # /metrics from either worker covers both, each sample labelled with its worker (published every second).
        counts: dict[str, float] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = nexus.get("/metrics")[1]
            counts = {line.split('worker="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                      for line in text.splitlines() if line.startswith("nexus_echo_requests_total{")}
            if set(counts) == {"0", "1"} and sum(counts.values()) == asked:
                break
            time.sleep(0.2)
        assert set(counts) == {"0", "1"} and sum(counts.values()) == asked, text
        assert len([ln for ln in text.splitlines() if ln.startswith("nexus_worker_info{")]) == 2
        own = nexus.get("/metrics?scope=worker")[1]
        assert len([ln for ln in own.splitlines() if ln.startswith("nexus_worker_info{")]) == 1
        assert nexus.stop() == 0, nexus.logs


def test_a_crashed_worker_is_replaced() -> None:
    nexus, port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        victim = int(nexus.events("worker_started")[0]["worker_pid"])
        os.kill(victim, 9)
        nexus.wait_for_event("worker_started", count=3)
        nexus.wait_for_event("worker_ready", count=3)
        pids = {int(ask(port, "PID")) for _ in range(30)}
        assert victim not in pids and pids
        assert nexus.events("worker_died")[0]["worker_pid"] == str(victim)


def test_admin_endpoints_answer() -> None:
    nexus, _port = echo_nexus()
    with nexus:
        status, health = nexus.get("/health")
        assert status == 200 and health["planes"]["echo"]["status"] == "up"
        assert nexus.get("/health/echo")[0] == 200
        status, body = nexus.get("/health/postgres")
        assert status == 404 and body["status"] == "absent" and "no [postgres] plane" in body["reason"]
        status, metrics = nexus.get("/metrics")
        assert status == 200 and "nexus_worker_info{" in metrics and "nexus_backend_up{" in metrics
        assert "process_resident_memory_bytes" in metrics and "nexus_worker_event_loop_lag_seconds" in metrics
        status, config = nexus.get("/config")
        assert status == 200 and len(config["digest"]) == 64 and config["config"]["server"]["shutdown_timeout"] == "10s"


@pytest.mark.parametrize("workers", [1, 2])
def test_startup_failure_exits_non_zero_with_the_reason(workers: int) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        # The admin port is held by a socket without SO_REUSEPORT: the bind fails and nothing half-starts.
        nexus = NexusProcess({"admin": {"listen": listen}}, workers=workers, ready_timeout=15)
        with pytest.raises(NexusStartError) as info:
            nexus.start()
        nexus.stop()
        assert "startup_failed" in str(info.value)
        if workers == 1:
            assert nexus.returncode == 3
        else:  # the supervisor does not restart a worker that cannot start: it gives up and fails
            assert nexus.returncode == 1
            assert "event=giving_up" in str(info.value)
            assert "event=worker_started worker=0" in str(info.value)
            assert len(nexus.events("worker_started")) == 2  # no restart loop
    finally:
        busy.close()


def test_bad_config_refuses_to_start() -> None:
    nexus = NexusProcess({"server": {"wrokers": 2}, "admin": {"listen": free_listen()}}, ready_timeout=15)
    with pytest.raises(NexusStartError) as info:
        nexus.start()
    nexus.stop()
    assert nexus.returncode == 2
    assert "server.wrokers: unknown key" in str(info.value)


def test_drift_between_the_running_config_and_the_file_is_reported() -> None:
    nexus, _port = echo_nexus()
    with nexus:
        def config_diff() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "nexus_fast", "config", "diff", nexus.config_path],
                                  capture_output=True, text=True, timeout=30)

        assert nexus.get("/config")[1]["file"]["drifted"] is False
        assert config_diff().returncode == 0
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "health_check_interval": "3s"}})
        status, body = nexus.get("/config")
        assert status == 200 and body["file"]["drifted"] is True
        assert body["file"]["keys"] == ["admin.health_check_interval"]
        result = config_diff()
        assert result.returncode == 1, result.stdout
        assert "admin.health_check_interval: running '1s', file '3s'" in result.stdout
        nexus.reload()
        nexus.wait_for_event("reload_applied")
        assert nexus.get("/config")[1]["file"]["drifted"] is False
        assert config_diff().returncode == 0


def test_online_restart_replaces_every_worker_without_refusing_a_connection() -> None:
    nexus, port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        old = {int(e["worker_pid"]) for e in nexus.events("worker_started")}
        # A request in flight on an old worker must finish after the new generation took over.
        held: list[str] = []
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(b"HOLD 2\n")
        replies = sock.makefile("rb")
        assert replies.readline() == b"holding\n"
        holder = threading.Thread(target=lambda: held.append(replies.readline().decode().strip()))
        holder.start()
        # Meanwhile a client keeps connecting; none may be refused while generations change.
        stop = threading.Event()
        failures: list[str] = []
        served_by: set[int] = set()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    served_by.add(int(ask(port, "PID", timeout=5)))
                except (OSError, ValueError) as exc:
                    failures.append(repr(exc))
                time.sleep(0.01)

        client = threading.Thread(target=hammer)
        client.start()
        time.sleep(0.3)
        nexus.signal(12)  # SIGUSR2
        nexus.wait_for_event("restart_done", timeout=20)
        nexus.wait_for_event("worker_retired", count=2, timeout=20)
        time.sleep(0.3)
        stop.set()
        client.join(10)
        holder.join(10)
        sock.close()
        new = {int(e["worker_pid"]) for e in nexus.events("worker_started")} - old
        assert len(new) == 2, nexus.logs
        assert held == ["done"], nexus.logs
        assert failures == [], failures[:5]
        assert {int(ask(port, "PID")) for _ in range(20)} <= new
        assert served_by & old and served_by & new
        assert nexus.get("/health")[1]["pid"] in new
        assert nexus.stop() == 0, nexus.logs


def test_online_restart_with_a_broken_file_keeps_the_old_workers() -> None:
    nexus, port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        old = {int(e["worker_pid"]) for e in nexus.events("worker_started")}
        nexus.write_config("[server]\nworkers = 0\n")
        nexus.signal(12)
        nexus.wait_for_event("restart_rejected")
        time.sleep(0.3)
        assert {int(e["worker_pid"]) for e in nexus.events("worker_started")} == old
        assert {int(ask(port, "PID")) for _ in range(10)} <= old


def test_post_reload_answers_the_outcome_and_reaches_every_worker() -> None:
    nexus, port = echo_nexus()
    with nexus:
        nexus.write_config("[admin]\nhealth_check_interval = \"soon\"\n")
        status, body = nexus.post("/reload")
        assert status == 422 and body["status"] == "rejected"
        assert "admin.health_check_interval" in body["reason"]
        assert ask(port, "INTERVAL") == "1s"
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "health_check_interval": "4s"}})
        status, body = nexus.post("/reload")
        assert status == 200 and body["status"] == "applied"
        assert ask(port, "INTERVAL") == "4s"
        assert nexus.get("/reload")[0] == 405  # a reload is never a GET (no prefetch or crawler triggers it)

    nexus, port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "health_check_interval": "5s"}})
        status, body = nexus.post("/reload")
        assert status == 202 and body["scope"] == "every worker"
        assert len(nexus.wait_for_event("reload_applied", count=2)) == 2
        assert {ask(port, "INTERVAL") for _ in range(10)} == {"5s"}


def test_reload_refuses_what_only_a_restart_can_change() -> None:
    nexus, port = echo_nexus()
    with nexus:
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": free_listen(), "health_check_interval": "2s"}})
        status, body = nexus.post("/reload")
        assert status == 422 and body["reason"].startswith("admin.listen changed")
        nexus.write_config({"admin": {"listen": nexus.admin_listen},
                            "redis": {"pools": {"c": {"listen": free_listen(), "servers": ["127.0.0.1:6379:1"]}}}})
        status, body = nexus.post("/reload")
        assert status == 422 and body["reason"].startswith("adding the [redis] section needs a restart")
        assert ask(port, "INTERVAL") == "1s"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    nexus, _port = echo_nexus(workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        workers = {int(e["worker_pid"]) for e in nexus.events("worker_started")}
        assert all(_running(pid) for pid in workers)
        metrics_dir = nexus.events("supervising")[0]["metrics_dir"]
        assert os.path.isdir(metrics_dir)
        os.kill(nexus.pid, 9)  # no chance to forward anything: the kernel's parent-death signal must do it
        deadline = time.monotonic() + 15
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in workers), nexus.logs
        assert len(nexus.events("stopped")) == 2  # they drained and stopped, not crashed
        assert not os.path.exists(metrics_dir)  # the last worker out cleaned up after the dead supervisor


def test_the_watchdog_replaces_a_worker_whose_event_loop_is_stuck() -> None:
    nexus, port = echo_nexus({"server": {"worker_watchdog_timeout": "3s"}}, workers=2)
    with nexus:
        nexus.wait_for_event("worker_ready", count=2)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"PID\n")
        stuck = int(sock.makefile("rb").readline())
        sock.sendall(b"BLOCK 60\n")  # that worker's loop now sleeps: no heartbeats, no service
        hung = nexus.wait_for_event("worker_hung", timeout=15)
        sock.close()
        assert hung[0]["worker_pid"] == str(stuck)
        nexus.wait_for_event("worker_ready", count=3)
        assert {int(ask(port, "PID")) for _ in range(20)}.isdisjoint({stuck})
        assert not _running(stuck)
        # Workers that are merely busy draining or idle are never flagged.
        assert len(nexus.events("worker_hung")) == 1


def test_drain_is_bounded_by_shutdown_timeout() -> None:
    nexus, port = echo_nexus({"server": {"shutdown_timeout": "1s"}})
    with nexus:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(b"HOLD 30\n")
        replies = sock.makefile("rb")
        assert replies.readline() == b"holding\n"
        sent = time.monotonic()
        nexus.signal(15)
        code = nexus.wait(15)
        took = time.monotonic() - sent
        assert replies.readline() == b""  # cut at the deadline: no answer, connection closed
        sock.close()
        assert code == 0, nexus.logs
        assert 0.9 <= took < 5, took


def test_json_logs_one_object_per_line() -> None:
    nexus, port = echo_nexus({"server": {"log_format": "json", "log_level": "debug"}})
    with nexus:
        assert ask(port, "ping") == "ping"
    lines = [line for line in nexus.logs.splitlines() if line.strip()]
    assert lines and all(line.startswith('{"ts"') for line in lines), lines[:3]
    ready = nexus.events("worker_ready")
    assert ready and ready[0]["level"] == "info" and ready[0]["planes"] == "echo"
    assert nexus.events("stopped")


def test_a_pure_python_run_says_so_once_at_start() -> None:
    port = free_port()
    env = {"NEXUS_FAST_EXTRA_PLANES": EXTRA, "NEXUS_ECHO_LISTEN": f"127.0.0.1:{port}", "NEXUS_FAST_NO_EXTENSIONS": "1"}
    with NexusProcess({}, env=env) as nexus:
        assert ask(port, "ping") == "ping"
        (event,) = nexus.events("native_modules_unavailable")
        assert "NEXUS_FAST_NO_EXTENSIONS" in event["reason"]
    with NexusProcess({}, env={**env, "NEXUS_FAST_NO_EXTENSIONS": ""}) as nexus:
        assert nexus.events("native_modules_unavailable") == []


def test_admin_token_guards_config_and_reload_but_not_probes() -> None:
    nexus, _port = echo_nexus({"admin": {"auth_token": "t0ken"}})
    with nexus:
        assert nexus.get("/config")[0] == 401
        assert nexus.post("/reload")[0] == 401
        assert nexus.request("GET", "/config", token="wrong")[0] == 401
        status, body = nexus.request("GET", "/config", token="t0ken")
        assert status == 200 and body["config"]["admin"]["auth_token"] == "**********"
        assert nexus.request("POST", "/reload", token="t0ken")[0] == 200
        for path in ("/health", "/ready", "/metrics"):
            assert nexus.get(path)[0] == 200
        # config diff reads the token from the file it compares
        result = subprocess.run([sys.executable, "-m", "nexus_fast", "config", "diff", nexus.config_path],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout


def test_admin_over_tls(tmp_path) -> None:
    cert, key = tmp_path / "admin.pem", tmp_path / "admin.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    nexus, _port = echo_nexus({"admin": {"tls_cert_file": str(cert), "tls_key_file": str(key)}})
    with nexus:
        assert nexus.admin_url.startswith("https://")
        assert nexus.get("/health")[0] == 200
        # Plain HTTP on the TLS port gets no answer.
        plain = NexusProcess.__new__(NexusProcess)
        plain.admin_listen, plain.admin_tls = nexus.admin_listen, False
        assert plain.get("/health", timeout=2)[0] in (0, 400)
        config_file = tmp_path / "verify.toml"
        config_file.write_text(f'[admin]\nlisten = "{nexus.admin_listen}"\ntls_cert_file = "{cert}"\n'
                               f'tls_key_file = "{key}"\n')
        result = subprocess.run([sys.executable, "-m", "nexus_fast", "verify", "-c", str(config_file)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout
    with pytest.raises(NexusStartError) as info:
        NexusProcess({"admin": {"listen": free_listen(), "tls_cert_file": str(cert)}}, ready_timeout=15).start()
    assert "tls_cert_file and tls_key_file go together" in str(info.value)


def test_status_summarises_the_running_instance() -> None:
    nexus, _port = echo_nexus({"admin": {"auth_token": "tok"}})
    with nexus:
        def status() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "nexus_fast", "status", "-c", nexus.config_path],
                                  capture_output=True, text=True, timeout=30)

        result = status()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"nexus-fast at {nexus.admin_listen}" in result.stdout and ": up" in result.stdout
        assert "[echo] up" in result.stdout and "echo/self" in result.stdout
        assert "last reload: none" in result.stdout
        nexus.write_config({"server": {"shutdown_timeout": "10s"},
                            "admin": {"listen": nexus.admin_listen, "auth_token": "tok", "health_check_interval": "3s"}})
        result = status()
        assert result.returncode == 1 and "DRIFT" in result.stdout
    result = status()
    assert result.returncode == 2 and "cannot reach" in result.stdout


def test_one_supervised_worker_restarts_online() -> None:
    nexus, port = echo_nexus({"server": {"supervise": True}})
    with nexus:
        nexus.wait_for_event("worker_ready")
        (old,) = {int(e["worker_pid"]) for e in nexus.events("worker_started")}
        assert nexus.pid != old and int(ask(port, "PID")) == old
        nexus.signal(12)
        nexus.wait_for_event("restart_done", timeout=20)
        nexus.wait_for_event("worker_retired", timeout=20)
        (new,) = {int(e["worker_pid"]) for e in nexus.events("worker_started")} - {old}
        assert int(ask(port, "PID")) == new
    lone, _ = echo_nexus()
    with lone:
        lone.signal(12)  # no supervisor: logged, never fatal
        lone.wait_for_event("restart_unsupported")
        assert lone.get("/ready")[0] == 200
