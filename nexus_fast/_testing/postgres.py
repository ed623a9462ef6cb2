"""Throwaway PostgreSQL clusters for tests and benchmarks: a primary and hot standbys on free ports, always removed.

Why a harness of our own (as asyncpg's ``asyncpg/cluster.py`` and ``_testbase.HotStandbyTestCase``): the routing,
failover and lag tests must stop, restart and pause servers, which must never happen to the machine's shared
PostgreSQL on 127.0.0.1:5432. Each node here is a real ``postgres`` started by ``pg_ctl`` from
``/usr/lib/postgresql/15/bin`` (``NEXUS_PG_BIN`` overrides), with its data directory under a fresh temporary
directory owned by the ``postgres`` OS user. PostgreSQL refuses to run as root, so when we are root every server
command runs through ``runuser -u postgres --``.

Usage::

    from nexus_fast._testing.postgres import postgres_cluster

    with postgres_cluster(standbys=1) as cluster:        # primary + one hot standby, replicating
        cluster.primary.dsn()                            # "postgresql://postgres@127.0.0.1:PORT/postgres"
        cluster.standby.execute("SELECT pg_is_in_recovery()")   # -> "t"
        cluster.pause_replay()                           # pg_wal_replay_pause(): the standby falls behind
        cluster.primary.execute("INSERT ...")            # ... now it lags
        cluster.resume_replay(); cluster.wait_caught_up()
        cluster.standby.stop(); cluster.standby.start()  # or .restart(), .kill() (SIGKILL the postmaster)
        cluster.standby.promote()                        # failover: the standby becomes a primary
    # every server stopped and every file removed here, even if the body raised

``postgres_node()`` gives a single primary. ``system_postgres_dsn()`` names the machine's own PostgreSQL for tests
that only need one plain server they will not stop. Pytest fixtures built on these live in
``nexus_fast._testing.postgres_fixtures`` (``pg_cluster``: one primary + standby per test module, restored before
each test), which conftest files import.

Configuration of every node (chosen for tests, not production): trust authentication for 127.0.0.1 including
replication connections, ``wal_level = replica``, ``hot_standby = on``, ``fsync = off``,
``synchronous_commit = off`` and ``full_page_writes = off`` (speed; these clusters are thrown away), the Unix socket
inside the node's own directory (so nodes never collide in /var/run/postgresql), logging to ``<datadir>/log``
(``node.log_tail()`` shows it when a start fails). A standby is made with ``pg_basebackup -R -X stream`` and
therefore has ``primary_conninfo`` and ``standby.signal`` written for it.

Clean-up is layered so a failed or interrupted test leaves nothing behind: the context managers stop every node in
``finally``; an ``atexit`` hook stops any node still registered (a test that forgot ``close()``); stopping falls
back from ``pg_ctl stop -m fast`` to ``-m immediate`` to SIGKILL of the postmaster pid.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from nexus_fast._testing.ports import free_port, port_open, system_postgres_address

PG_BIN = os.environ.get("NEXUS_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_OS_USER = "postgres"
SUPERUSER = "postgres"

_live_nodes: set[PostgresNode] = set()
_live_lock = threading.Lock()


class HarnessError(RuntimeError):
    """A server command failed; the message carries the command's output and the server log's tail."""


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to start as root ("root execution of the PostgreSQL server is not permitted").
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *argv]
    return argv


def _run(argv: list[str], timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}, cwd="/",
    )
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc


def _chown_to_postgres(path: str) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(PG_OS_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


_BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'16MB'",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "max_replication_slots": "5",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Make replay-lag tests quick: the standby reports its position often and the primary writes WAL promptly.
    "wal_receiver_status_interval": "'1s'",
    "wal_writer_delay": "'10ms'",
    # A standby whose primary restarted reconnects after this (PostgreSQL's default is 5 s).
    "wal_retrieve_retry_interval": "'500ms'",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
    "max_prepared_transactions": "0",
}


@dataclass(eq=False)
class PostgresNode:
    """One PostgreSQL server (primary or standby) owned by the harness."""

    name: str
    data_dir: str
    port: int
    role: str = "primary"  # "primary" | "standby"
    host: str = "127.0.0.1"
    _started: bool = field(default=False, repr=False)

    # -- addresses ---------------------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def socket_dir(self) -> str:
        return self.data_dir

    @property
    def log_file(self) -> str:
        return os.path.join(os.path.dirname(self.data_dir), f"{self.name}.log")

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq URI for this node (asyncpg, psycopg and psql all accept it)."""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user={user}"

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def initdb(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        _chown_to_postgres(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        _run([f"{PG_BIN}/initdb", "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust", "-N",
              "-E", "UTF8", "--locale=C"], timeout=120)
        self.write_settings(_BASE_SETTINGS)
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w", encoding="utf-8") as hba:
            hba.write(
                "local all all trust\n"
                "local replication all trust\n"
                "host all all 127.0.0.1/32 trust\n"
                "host replication all 127.0.0.1/32 trust\n"
            )

    def write_settings(self, settings: dict[str, str]) -> None:
        """Append ``key = value`` lines to postgresql.conf (later lines win); applied at the next start/reload."""
        lines = [f"{key} = {value}\n" for key, value in settings.items()]
        lines.append(f"port = {self.port}\n")
        lines.append(f"unix_socket_directories = '{self.socket_dir}'\n")
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.writelines(lines)

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until it accepts connections (a standby: until hot standby is open for reads)."""
        with _live_lock:
            _live_nodes.add(self)
        proc = _run([f"{PG_BIN}/pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file, "-w",
                     "-t", str(int(timeout))], timeout=timeout + 10, check=False)
        if proc.returncode != 0:
            raise HarnessError(f"{self.name}: pg_ctl start failed: {proc.stdout}{proc.stderr}\n{self.log_tail()}")
        self._started = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = _run([f"{PG_BIN}/pg_isready", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER],
                        timeout=10, check=False)
            if proc.returncode == 0:
                return
            last = proc.stdout + proc.stderr
            time.sleep(0.05)
        raise HarnessError(f"{self.name} not ready after {timeout}s: {last}\n{self.log_tail()}")

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server (``mode``: smart | fast | immediate). Falls back to SIGKILL; never raises if stopped."""
        if self.is_running():
            proc = _run([f"{PG_BIN}/pg_ctl", "stop", "-D", self.data_dir, "-m", mode, "-w",
                         "-t", str(int(timeout))], timeout=timeout + 10, check=False)
            if proc.returncode != 0 and self.is_running():
                _run([f"{PG_BIN}/pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w", "-t", "10"],
                     timeout=20, check=False)
            if self.is_running():
                self.kill()
        self._started = False

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash, as far as clients can tell); the children exit when it dies."""
        pid = self.postmaster_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _pid_alive(pid):
                time.sleep(0.02)
        # Orphaned backends keep running briefly after the postmaster dies; wait until the port is free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and port_open(self.host, self.port, timeout=0.1):
            time.sleep(0.05)
        # A SIGKILLed postmaster leaves postmaster.pid and the socket lock file behind; the next start refuses
        # them while the dead pid is not yet reaped (kill(pid, 0) succeeds on a zombie), so remove them.
        for leftover in ("postmaster.pid", f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.data_dir, leftover))
        self._started = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def reload(self) -> None:
        _run([f"{PG_BIN}/pg_ctl", "reload", "-D", self.data_dir])

    def promote(self, timeout: float = 30.0) -> None:
        """Promote a standby to a primary (``pg_ctl promote -w``): it leaves recovery and accepts writes."""
        _run([f"{PG_BIN}/pg_ctl", "promote", "-D", self.data_dir, "-w", "-t", str(int(timeout))],
             timeout=timeout + 10)
        self.role = "primary"

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="utf-8") as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            with _live_lock:
                _live_nodes.discard(self)

    # -- queries -----------------------------------------------------------------------------------------------
    def execute(self, sql: str, dbname: str = "postgres", timeout: float = 30.0) -> str:
        """Run SQL with psql (unaligned, tuples only) and return its stdout stripped; raises on any error."""
        proc = subprocess.run(
            [f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
             "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        )
        if proc.returncode != 0:
            raise HarnessError(f"{self.name}: {sql!r} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (not ours, so rarely) still answers kill(0); /proc tells the truth.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


@dataclass(eq=False)
class PostgresCluster:
    """A primary and zero or more hot standbys streaming from it, in one temporary directory."""

    base_dir: str
    primary: PostgresNode
    standbys: list[PostgresNode] = field(default_factory=list)

    @property
    def standby(self) -> PostgresNode:
        """The first standby (most tests have exactly one)."""
        if not self.standbys:
            raise HarnessError("this cluster has no standby")
        return self.standbys[0]

    @property
    def nodes(self) -> list[PostgresNode]:
        return [self.primary, *self.standbys]

    def add_standby(self) -> PostgresNode:
        """pg_basebackup a new hot standby from the primary (``-R`` writes primary_conninfo + standby.signal)."""
        index = len(self.standbys) + 1
        node = PostgresNode(f"standby{index}", os.path.join(self.base_dir, f"standby{index}", "data"),
                            free_port(), role="standby")
        parent = os.path.dirname(node.data_dir)
        os.makedirs(parent, exist_ok=True)
        _chown_to_postgres(parent)
        _run([f"{PG_BIN}/pg_basebackup", "-h", self.primary.host, "-p", str(self.primary.port), "-U", SUPERUSER,
              "-D", node.data_dir, "-R", "-X", "stream", "-c", "fast", "--no-sync"], timeout=120)
        node.write_settings({})  # its own port and socket directory (the copied conf names the primary's)
        _start_on_fresh_port(node)
        self.standbys.append(node)
        return node

    # -- replication control -----------------------------------------------------------------------------------
    def pause_replay(self, standby: PostgresNode | None = None) -> None:
        """Stop applying WAL on the standby (it still receives it): its replay lag grows with primary writes."""
        (standby or self.standby).execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self, standby: PostgresNode | None = None) -> None:
        (standby or self.standby).execute("SELECT pg_wal_replay_resume()")

    def replay_paused(self, standby: PostgresNode | None = None) -> bool:
        return (standby or self.standby).execute("SELECT pg_is_wal_replay_paused()") == "t"

    def wait_caught_up(self, standby: PostgresNode | None = None, timeout: float = 30.0) -> None:
        """Block until the standby has replayed everything the primary had written when this was called."""
        node = standby or self.standby
        target = self.primary.execute("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = node.execute(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if done == "t":
                return
            time.sleep(0.05)
        raise HarnessError(f"{node.name} did not replay up to {target} within {timeout}s")

    def close(self) -> None:
        errors: list[BaseException] = []
        for node in reversed(self.nodes):
            try:
                node.close()
            except BaseException as exc:  # keep stopping the others, report after
                errors.append(exc)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if errors:
            raise errors[0]


def _start_on_fresh_port(node: PostgresNode, attempts: int = 3) -> None:
    # free_port() is a snapshot; another test may grab the port before postgres binds it. Retry on a new one.
    for attempt in range(attempts):
        try:
            node.start()
            return
        except HarnessError:
            if attempt == attempts - 1 or "could not bind" not in node.log_tail():
                raise
            node.port = free_port()
            node.write_settings({})


def _make_base_dir() -> str:
    base = tempfile.mkdtemp(prefix="nexus-pg-")
    _chown_to_postgres(base)
    os.chmod(base, 0o755)
    return base


def create_cluster(standbys: int = 1, settings: dict[str, str] | None = None) -> PostgresCluster:
    """Start a primary and ``standbys`` hot standbys; the caller must ``close()`` it (prefer ``postgres_cluster``)."""
    base = _make_base_dir()
    primary_dir = os.path.join(base, "primary")
    os.makedirs(primary_dir)
    _chown_to_postgres(primary_dir)
    primary = PostgresNode("primary", os.path.join(primary_dir, "data"), free_port())
    cluster = PostgresCluster(base, primary)
    try:
        primary.initdb()
        if settings:
            primary.write_settings(settings)
        _start_on_fresh_port(primary)
        for _ in range(standbys):
            cluster.add_standby()
    except BaseException:
        cluster.close()
        raise
    return cluster


@contextlib.contextmanager
def postgres_cluster(standbys: int = 1, settings: dict[str, str] | None = None) -> Iterator[PostgresCluster]:
    """A primary + ``standbys`` hot standbys for the ``with`` body; everything is stopped and deleted after."""
    cluster = create_cluster(standbys, settings)
    try:
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def postgres_node(settings: dict[str, str] | None = None) -> Iterator[PostgresNode]:
    """A single throwaway primary for the ``with`` body."""
    with postgres_cluster(standbys=0, settings=settings) as cluster:
        yield cluster.primary


def system_postgres_dsn(dbname: str = "test", user: str = "postgres") -> str:
    """The machine's own PostgreSQL (never stop or reconfigure it: every engineer's tests share it)."""
    host, port = system_postgres_address()
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def pg_binaries_available() -> bool:
    return os.path.exists(f"{PG_BIN}/pg_ctl") and os.path.exists(f"{PG_BIN}/initdb")


@atexit.register
def _stop_leftover_nodes() -> None:
    with _live_lock:
        leftovers = list(_live_nodes)
    for node in leftovers:
        with contextlib.suppress(Exception):
            node.close()
        with contextlib.suppress(Exception):
            shutil.rmtree(os.path.dirname(os.path.dirname(node.data_dir)), ignore_errors=True)
