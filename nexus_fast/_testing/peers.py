"""The peers nexus-fast is measured beside, started on free ports from generated configs: PgBouncer, twemproxy
(nutcracker), HAProxy in TCP mode, and plain ``redis-server`` nodes.

Used by ``bench/`` (every target of a benchmark run) and by tests that compare behaviour with a peer (a key written
through twemproxy must be found on the node nexus-fast picks). Each ``start_*`` function writes the peer's config
into a fresh directory, starts the peer in the foreground as a child process, waits until it accepts connections
and returns a ``PeerProcess``; if the peer exits or never listens, it raises ``PeerStartError`` carrying the peer's
own log, so a caller can skip that peer with the real reason. ``PeerProcess.stop()`` (or leaving its ``with``
block) terminates it and removes the directory.

The config generators (``pgbouncer_ini``, ``pgbouncer_userlist``, ``nutcracker_yml``, ``haproxy_cfg``) are pure
functions so the text can be checked and reused (``nexus-fast serve -c pgbouncer.ini`` reads the same files).
Settings follow each peer's documentation:

- PgBouncer (https://www.pgbouncer.org/config.html): ``pool_mode``, ``default_pool_size``, ``max_client_conn``;
  ``auth_type = trust`` still requires the user to exist in ``auth_file``; the Unix socket is disabled
  (``unix_socket_dir =``) so parallel instances never collide in /tmp. PgBouncer refuses to run as root, so as root
  it gets ``-u postgres`` and its directory is handed to that user.
- twemproxy (nutcracker README, "Configuration"): one pool, ``servers`` as ``host:port:weight``; the stats port
  (default 22222) is moved to a free port with ``-s`` so instances do not collide.
- HAProxy (configuration manual, "mode tcp"): a frontend/backend pair relaying bytes, one thread (``nbthread 1``)
  so it is a single-core relay like one nexus-fast worker and PgBouncer.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nexus_fast._testing.ports import free_port, port_open

Address = tuple[str, int]


class PeerStartError(RuntimeError):
    """A peer could not be started; the message says why (its exit status and the tail of its log)."""


@dataclass
class PeerProcess:
    """A running peer: its child process, the address it listens on, its config directory."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    workdir: Path
    log_path: Path
    config_path: Path
    extra_ports: dict[str, int] = field(default_factory=dict)
    owns_workdir: bool = True

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> Address:
        return self.host, self.port

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the config directory is removed."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout=timeout)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------------
# Config generators (pure)


def pgbouncer_ini(
    *,
    listen: Address,
    backend: Address,
    auth_file: str,
    logfile: str,
    pool_mode: str = "transaction",
    pool_size: int = 20,
    max_client_conn: int = 20000,
    auth_type: str = "trust",
    admin_users: Sequence[str] = ("postgres",),
) -> str:
    """A pgbouncer.ini whose fallback database ``*`` sends every database name to ``backend``."""
    return "\n".join([
        "[databases]",
        f"* = host={backend[0]} port={backend[1]}",
        "",
        "[pgbouncer]",
        f"listen_addr = {listen[0]}",
        f"listen_port = {listen[1]}",
        "unix_socket_dir =",
        f"auth_type = {auth_type}",
        f"auth_file = {auth_file}",
        f"admin_users = {', '.join(admin_users)}",
        f"pool_mode = {pool_mode}",
        f"default_pool_size = {pool_size}",
        f"max_client_conn = {max_client_conn}",
        f"logfile = {logfile}",
        # Per-connection log lines would dominate pgbench -C runs and are not what is being measured.
        "log_connections = 0",
        "log_disconnections = 0",
        # pgbench and psql send no unusual startup parameters; JDBC-style ones are accepted rather than refused.
        "ignore_startup_parameters = extra_float_digits",
        "",
    ])


def pgbouncer_userlist(users: dict[str, str]) -> str:
    """userlist.txt: one ``"user" "secret"`` line per user; double quotes inside are doubled."""
    def quote(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'
    return "".join(f"{quote(user)} {quote(secret)}\n" for user, secret in users.items())


def nutcracker_yml(
    *,
    listen: Address,
    servers: Sequence[Address],
    pool: str = "bench",
    hash: str = "fnv1a_64",
    distribution: str = "ketama",
    server_connections: int = 1,
    auto_eject_hosts: bool = False,
    timeout_ms: int = 5000,
) -> str:
    """A nutcracker.yml with one Redis pool over ``servers`` (weight 1 each)."""
    lines = [
        f"{pool}:",
        f"  listen: {listen[0]}:{listen[1]}",
        f"  hash: {hash}",
        f"  distribution: {distribution}",
        "  redis: true",
        f"  auto_eject_hosts: {'true' if auto_eject_hosts else 'false'}",
        f"  server_connections: {server_connections}",
        f"  timeout: {timeout_ms}",
        "  preconnect: true",
        "  servers:",
    ]
    lines += [f"   - {host}:{port}:1" for host, port in servers]
    return "\n".join(lines) + "\n"


def haproxy_cfg(*, listen: Address, backend: Address, maxconn: int = 20000, nbthread: int = 1) -> str:
    """HAProxy relaying TCP bytes from ``listen`` to ``backend``, protocol-unaware."""
    return "\n".join([
        "global",
        f"  maxconn {maxconn}",
        f"  nbthread {nbthread}",
        "",
        "defaults",
        "  mode tcp",
        f"  maxconn {maxconn}",
        "  timeout connect 5s",
        # Idle benchmark clients must not be cut: generous client/server timeouts.
        "  timeout client 1h",
        "  timeout server 1h",
        "",
        "frontend relay_in",
        f"  bind {listen[0]}:{listen[1]}",
        "  default_backend relay_out",
        "",
        "backend relay_out",
        f"  server backend1 {backend[0]}:{backend[1]}",
        "",
    ])


# ---------------------------------------------------------------------------------------------------------------
# Starting peers


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _workdir(prefix: str, workdir: Path | None) -> tuple[Path, bool]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, False
    return Path(tempfile.mkdtemp(prefix=f"nexus-{prefix}-")), True


def _launch(
    name: str, argv: list[str], *, host: str, port: int, workdir: Path, owns: bool, log_path: Path,
    config_path: Path, timeout: float, extra_ports: dict[str, int] | None = None,
) -> PeerProcess:
    if shutil.which(argv[0]) is None:
        if owns:
            shutil.rmtree(workdir, ignore_errors=True)
        raise PeerStartError(f"{name}: {argv[0]} is not installed")
    # A file, never a pipe: a pipe nobody reads fills up and blocks the peer.
    with open(log_path.with_suffix(".stdout"), "wb") as stdout:
        process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT, cwd=workdir,
                                   start_new_session=True)
    peer = PeerProcess(name, process, host, port, workdir, log_path, config_path, extra_ports or {}, owns)

    def output() -> str:
        text = _tail(log_path)
        if log_path.with_suffix(".stdout") != log_path:
            text += "\n" + _tail(log_path.with_suffix(".stdout"))
        return text.strip() or "(no output)"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = output()
            peer.stop()
            raise PeerStartError(f"{name} exited with status {process.returncode}: {text}")
        if port_open(host, port):
            # Something answers; make sure it is this peer and not another process already on the port (the peer
            # then fails to bind and exits a moment later).
            time.sleep(0.15)
            if process.poll() is None:
                return peer
            continue
        time.sleep(0.05)
    text = output()
    peer.stop()
    raise PeerStartError(f"{name} did not listen on {host}:{port} within {timeout}s: {text}")


def start_pgbouncer(
    backend: Address, *, port: int | None = None, host: str = "127.0.0.1", pool_size: int = 20,
    pool_mode: str = "transaction", max_client_conn: int = 20000, users: dict[str, str] | None = None,
    auth_type: str = "trust", workdir: Path | None = None, timeout: float = 10.0,
) -> PeerProcess:
    """PgBouncer in front of ``backend`` (every database name passes through), trust auth by default."""
    path, owns = _workdir("pgbouncer", workdir)
    port = port or free_port(host)
    auth_file = path / "userlist.txt"
    log_path = path / "pgbouncer.log"
    config_path = path / "pgbouncer.ini"
    auth_file.write_text(pgbouncer_userlist(users or {"postgres": ""}))
    config_path.write_text(pgbouncer_ini(
        listen=(host, port), backend=backend, auth_file=str(auth_file), logfile=str(log_path),
        pool_mode=pool_mode, pool_size=pool_size, max_client_conn=max_client_conn, auth_type=auth_type,
    ))
    argv = ["pgbouncer", str(config_path)]
    if os.geteuid() == 0:
        # "PgBouncer should not run as root": switch to the postgres user, who must be able to read and write here.
        user = pwd.getpwnam("postgres")
        for item in [path, *path.iterdir()]:
            os.chown(item, user.pw_uid, user.pw_gid)
        argv = ["pgbouncer", "-u", "postgres", str(config_path)]
    return _launch("pgbouncer", argv, host=host, port=port, workdir=path, owns=owns, log_path=log_path,
                   config_path=config_path, timeout=timeout)


def start_nutcracker(
    servers: Sequence[Address], *, port: int | None = None, host: str = "127.0.0.1", hash: str = "fnv1a_64",
    distribution: str = "ketama", server_connections: int = 1, workdir: Path | None = None, timeout: float = 10.0,
) -> PeerProcess:
    """twemproxy over ``servers``; checked with ``nutcracker -t`` first so a bad config says why."""
    path, owns = _workdir("nutcracker", workdir)
    port = port or free_port(host)
    stats_port = free_port(host)
    log_path = path / "nutcracker.log"
    config_path = path / "nutcracker.yml"
    config_path.write_text(nutcracker_yml(listen=(host, port), servers=servers, hash=hash,
                                          distribution=distribution, server_connections=server_connections))
    if shutil.which("nutcracker") is not None:
        check = subprocess.run(["nutcracker", "-t", "-c", str(config_path)], capture_output=True, text=True,
                               timeout=10)
        if check.returncode != 0:
            if owns:
                shutil.rmtree(path, ignore_errors=True)
            raise PeerStartError(f"nutcracker rejected its config: {(check.stderr or check.stdout).strip()}")
    argv = ["nutcracker", "-c", str(config_path), "-s", str(stats_port), "-a", host, "-o", str(log_path)]
    return _launch("nutcracker", argv, host=host, port=port, workdir=path, owns=owns, log_path=log_path,
                   config_path=config_path, timeout=timeout, extra_ports={"stats": stats_port})


def start_haproxy(
    backend: Address, *, port: int | None = None, host: str = "127.0.0.1", maxconn: int = 20000,
    nbthread: int = 1, workdir: Path | None = None, timeout: float = 10.0,
) -> PeerProcess:
    """HAProxy relaying TCP to ``backend``; its config is checked with ``haproxy -c`` first."""
    path, owns = _workdir("haproxy", workdir)
    port = port or free_port(host)
    # HAProxy needs two descriptors per connection and refuses to start if it cannot raise its limit that far.
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    maxconn = max(1, min(maxconn, (soft - 100) // 2))
    log_path = path / "haproxy.log"
    config_path = path / "haproxy.cfg"
    config_path.write_text(haproxy_cfg(listen=(host, port), backend=backend, maxconn=maxconn, nbthread=nbthread))
    if shutil.which("haproxy") is not None:
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(config_path)], capture_output=True, text=True,
                               timeout=10)
        if check.returncode != 0:
            if owns:
                shutil.rmtree(path, ignore_errors=True)
            raise PeerStartError(f"haproxy rejected its config: {(check.stderr or check.stdout).strip()}")
    # -db: stay in the foreground, so the child we hold is the relay itself. Its messages go to our log file.
    argv = ["haproxy", "-db", "-f", str(config_path)]
    return _launch("haproxy", argv, host=host, port=port, workdir=path, owns=owns,
                   log_path=log_path.with_suffix(".stdout"), config_path=config_path, timeout=timeout)


def start_redis_server(
    *, port: int | None = None, host: str = "127.0.0.1", maxclients: int = 20000, workdir: Path | None = None,
    timeout: float = 10.0,
) -> PeerProcess:
    """A plain, non-persistent ``redis-server`` (no RDB, no AOF) on a free port."""
    path, owns = _workdir("redis", workdir)
    port = port or free_port(host)
    log_path = path / "redis.log"
    config_path = path / "redis.conf"
    config_path.write_text("\n".join([
        f"bind {host}", f"port {port}", "save \"\"", "appendonly no", "protected-mode no",
        f"maxclients {maxclients}", f"dir {path}", f"logfile {log_path}", "daemonize no", "",
    ]))
    return _launch("redis-server", ["redis-server", str(config_path)], host=host, port=port, workdir=path,
                   owns=owns, log_path=log_path, config_path=config_path, timeout=timeout)


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit (and, as root, the hard one) towards ``wanted``.

    Children inherit it, so call it before starting peers that must hold thousands of connections. Returns the
    soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))
            hard = wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def redis_ping(address: Address, timeout: float = 2.0) -> str:
    """Send one RESP PING and return the first reply line (``+PONG`` when healthy)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip()
