"""The parent process of ``nexus-fast serve``: runs one worker in-process, or forks N and looks after them.

With ``server.workers = 1`` the process is the worker (no extra parent, nothing between signals and the loop),
unless ``server.supervise`` asks for a supervisor anyway (online restart, watchdog, crash restarts).
With N > 1 the parent forks N workers before any event loop exists; each binds every listener with SO_REUSEPORT
and the kernel spreads incoming connections over them. The parent does no I/O of its own: it blocks the signals
it handles and waits for them synchronously (``sigtimedwait``), which avoids async-signal-safety pitfalls:

- SIGTERM/SIGINT: forwarded to every worker (each drains within ``server.shutdown_timeout``); workers still alive
  after that plus a grace period are killed; the parent exits 0 if every worker did.
- SIGHUP: the file is validated here too (so the parent restarts crashed workers with the newest good config),
  and forwarded; each worker reloads and reports on its own ``/config``.
- SIGUSR2: online restart. The file is validated, a new generation of workers is forked (the worker count may
  change), and once every new worker reports ready the old ones get SIGTERM and drain; the listeners never close,
  because old and new workers share them through SO_REUSEPORT. If a new worker fails to become ready within
  ``READY_TIMEOUT`` the new generation is stopped and the old one keeps serving.
- Watchdog: each worker writes a heartbeat on a pipe every second from its event loop; a ready worker silent for
  ``server.worker_watchdog_timeout`` (a blocked loop serves nobody) is killed and replaced.
- SIGCHLD: a worker that died outside shutdown is restarted (at most once a second per slot); a worker that could
  not even start (bad listener, plane refused its config) is not restarted in a loop: the parent gives up and exits.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import tempfile
import time

from nexus_fast.config.errors import ConfigError
from nexus_fast.config.load import LoadedConfig, load_config
from nexus_fast.observe.logging import get_logger
from nexus_fast.server.worker import EXIT_STARTUP_FAILED, run_worker

log = get_logger("supervisor")

HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2, signal.SIGCHLD}
KILL_GRACE = 5.0  # seconds past shutdown_timeout before a worker that ignores SIGTERM is killed
RESTART_MIN_INTERVAL = 1.0
READY_TIMEOUT = 30.0  # online restart: how long a new worker may take to report ready


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (prctl PR_SET_PDEATHSIG, Linux), so a killed supervisor
    never leaves orphan workers holding the ports; they drain and exit as on a normal shutdown."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class Supervisor:
    def __init__(self, config_path: str, loaded: LoadedConfig, workers: int, workers_override: bool = False) -> None:
        self.config_path = config_path
        self.loaded = loaded
        self.workers = workers
        self.workers_override = workers_override  # --workers given: it wins over server.workers on restart too
        self.children: dict[int, int] = {}  # pid -> worker slot
        self.retiring: dict[int, float] = {}  # pid -> kill deadline: old generation draining after an online restart
        self.started_at: dict[int, float] = {}  # slot -> last start time
        self.pipes: dict[int, int] = {}  # pid -> read end of the worker's status pipe
        self.last_beat: dict[int, float] = {}  # pid -> when the worker last wrote on it
        self.ready: set[int] = set()  # pids that reported ready
        self.stopping = False
        self.failed = False
        # Workers publish their metrics here so any of them can answer /metrics for all (worker_metrics.py).
        self.metrics_dir = tempfile.mkdtemp(prefix="nexus-metrics-")

    def _spawn(self, slot: int) -> int:
        """Fork a worker for ``slot``; returns its pid. The worker writes ``R`` on its status pipe once ready, then
        ``H`` every ``HEARTBEAT_INTERVAL`` (the watchdog's evidence that its event loop still runs)."""
        status_read, status_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent(os.getppid())
                os.close(status_read)
                for fd in self.pipes.values():  # siblings' pipes are not this worker's business
                    os.close(fd)
                code = run_worker(self.config_path, self.loaded, slot, supervised=True, metrics_dir=self.metrics_dir,
                                  status_fd=status_write)
            except BaseException:
                log.exception("worker_crashed", worker=slot)
            finally:
                os._exit(code)
        os.close(status_write)
        os.set_blocking(status_read, False)
        self.children[pid] = slot
        self.pipes[pid] = status_read
        self.last_beat[pid] = time.monotonic()
        self.started_at[slot] = time.monotonic()
        log.info("worker_started", worker=slot, worker_pid=pid)
        return pid

    def _read_pipes(self) -> None:
        """Take in what workers wrote on their status pipes: readiness and heartbeats; EOF means exiting."""
        now = time.monotonic()
        for pid, fd in list(self.pipes.items()):
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the worker closed it: it is exiting (reaped separately)
                os.close(fd)
                del self.pipes[pid]
                continue
            self.last_beat[pid] = now
            if b"R" in data:
                self.ready.add(pid)

    def _check_watchdog(self) -> None:
        """A ready worker silent for ``server.worker_watchdog_timeout`` has a stuck event loop: kill and replace it."""
        timeout = self.loaded.config.server.worker_watchdog_timeout
        if not timeout or self.stopping:
            return
        now = time.monotonic()
        for pid in list(self.ready):
            if pid in self.children and pid not in self.retiring and now - self.last_beat.get(pid, now) > timeout:
                log.error("worker_hung", worker=self.children[pid], worker_pid=pid,
                          reason=f"no heartbeat for {timeout}s; killing it (a replacement starts)")
                self.ready.discard(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _forget(self, pid: int) -> None:
        fd = self.pipes.pop(pid, None)
        if fd is not None:
            os.close(fd)
        self.last_beat.pop(pid, None)
        self.ready.discard(pid)

    def _forward(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            self._forget(pid)
            if slot is None:
                continue
            code = _exit_code(status)
            if self.retiring.pop(pid, None) is not None:
                log.info("worker_retired", worker=slot, worker_pid=pid, code=code)
                continue
            if self.stopping:
                log.info("worker_exited", worker=slot, worker_pid=pid, code=code)
                if code != 0:
                    self.failed = True
                continue
            log.error("worker_died", worker=slot, worker_pid=pid, code=code)
            if code == EXIT_STARTUP_FAILED:
                log.error("giving_up", reason=f"worker {slot} could not start; see its startup_failed event")
                self.failed = True
                self._begin_stop()
                continue
            wait = RESTART_MIN_INTERVAL - (time.monotonic() - self.started_at.get(slot, 0.0))
            if wait > 0:
                time.sleep(wait)  # a worker crashing in a loop must not spin the CPU
            self._spawn(slot)

    def _begin_stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self._forward(signal.SIGTERM)

    def _reload(self) -> None:
        try:
            self.loaded = load_config(self.config_path)
            log.info("reload_forwarded", digest=self.loaded.digest[:12])
        except ConfigError as exc:
            log.error("reload_rejected", reason=str(exc).splitlines()[0],
                      problems="; ".join(str(p) for p in exc.problems))
        self._forward(signal.SIGHUP)  # each worker validates again and reports on its /config

    def _online_restart(self) -> None:
        """A new generation of workers takes over from the old one without closing the listeners."""
        try:
            loaded = load_config(self.config_path)
        except ConfigError as exc:
            log.error("restart_rejected", reason=str(exc).splitlines()[0],
                      problems="; ".join(str(p) for p in exc.problems))
            return
        previous, self.loaded = self.loaded, loaded
        old = [pid for pid in self.children if pid not in self.retiring]
        count = self.workers if self.workers_override else loaded.config.server.worker_count()
        log.info("restart_started", old_workers=len(old), new_workers=count, digest=loaded.digest[:12])
        new = [self._spawn(slot) for slot in range(count)]
        deadline = time.monotonic() + READY_TIMEOUT
        failed = ""
        while not failed and not all(pid in self.ready for pid in new):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failed = f"new workers not ready after {READY_TIMEOUT}s"
                break
            waiting = [self.pipes[pid] for pid in new if pid in self.pipes and pid not in self.ready]
            if len(waiting) < sum(pid not in self.ready for pid in new):
                failed = "a new worker exited before it was ready"  # its pipe reached EOF
                break
            select.select(waiting, [], [], min(remaining, 0.5))
            self._read_pipes()
        if failed:
            log.error("restart_failed", reason=failed, kept_workers=len(old))
            self.loaded = previous
            self._retire(new)
            return
        self._retire(old)
        self.workers = count
        log.info("restart_done", workers=count, retiring=len(old))

    def _retire(self, pids: list[int]) -> None:
        deadline = time.monotonic() + self.loaded.config.server.shutdown_timeout + KILL_GRACE
        for pid in pids:
            self.retiring[pid] = deadline
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _kill_overdue_retirees(self) -> None:
        now = time.monotonic()
        for pid, deadline in list(self.retiring.items()):
            if now > deadline:
                log.error("killing_worker", worker_pid=pid, reason="drain after restart exceeded shutdown_timeout")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.retiring[pid] = now + KILL_GRACE

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        for slot in range(self.workers):
            self._spawn(slot)
        log.info("supervising", workers=self.workers, metrics_dir=self.metrics_dir)
        deadline: float | None = None
        while self.children:
            info = signal.sigtimedwait(HANDLED, 0.5)
            if info is not None:
                if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    log.info("shutdown_requested", signal=signal.Signals(info.si_signo).name)
                    self._begin_stop()
                elif info.si_signo == signal.SIGHUP and not self.stopping:
                    self._reload()
                elif info.si_signo == signal.SIGUSR2 and not self.stopping:
                    self._online_restart()
            self._read_pipes()
            self._reap()
            self._check_watchdog()
            self._kill_overdue_retirees()
            if self.stopping and deadline is None:
                deadline = time.monotonic() + self.loaded.config.server.shutdown_timeout + KILL_GRACE
            if deadline is not None and time.monotonic() > deadline and self.children:
                log.error("killing_workers", workers=len(self.children), reason="shutdown_timeout exceeded")
                self.failed = True
                self._forward(signal.SIGKILL)
                deadline = time.monotonic() + KILL_GRACE
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("supervisor_stopped", failed=self.failed)
        return 1 if self.failed else 0


def serve(config_path: str, workers: int | None = None) -> int:
    """``nexus-fast serve``: validate the config (nothing starts half-configured), then run the workers."""
    from nexus_fast.observe import logging as nexus_logging

    loaded = load_config(config_path)  # ConfigError propagates: the CLI prints it and exits non-zero
    server = loaded.config.server
    nexus_logging.configure(server.log_format, server.log_level)
    for warning in loaded.warnings:
        log.warning("config_warning", source=config_path, warning=warning)
    from nexus_fast import _extensions

    slow = [status for status in _extensions.report() if not status.compiled]
    if slow:  # said once at start-up (and by `nexus-fast version`): it works, only slower
        log.warning("native_modules_unavailable", modules=",".join(s.name for s in slow), reason=slow[0].reason)
    count = workers if workers is not None else server.worker_count()
    log.info("starting", source=config_path, format=loaded.file_format, workers=count, digest=loaded.digest[:12])
    if count <= 1 and not server.supervise:
        return run_worker(config_path, loaded, 0)
    return Supervisor(config_path, loaded, count, workers_override=workers is not None).run()
