"""nexus-fast itself as a subprocess, for end-to-end tests and bench: start on free ports, wait ready, stop cleanly.

    from nexus_fast._testing.proxy import NexusProcess, free_listen

    pg_listen = free_listen()
    config = {"postgres": {"listen": pg_listen, "auth_type": "trust",
                           "databases": {"test": {"servers": [{"host": "127.0.0.1", "port": 5432}]}}}}
    with NexusProcess(config, workers=1) as nexus:     # admin.listen gets a free port unless given
        nexus.admin_url                                  # "http://127.0.0.1:PORT"
        nexus.get("/health")                             # (status, parsed JSON or text)
        nexus.reload()                                   # SIGHUP (after nexus.write_config({...}) for a new file)
        nexus.post("/reload")                            # the same over HTTP: (status, outcome)
    # stopped here: SIGTERM, then SIGKILL after stop_timeout; nexus.returncode, nexus.logs for messages

``config`` is a dict (written as TOML to a temporary nexus.toml) or the path of an existing file (any format; then
the admin listener must be in the file). ``start()`` waits for ``GET /ready`` to answer 200 and raises
``NexusStartError`` with the process's log when it exits or does not become ready. Output goes to a file (never a
pipe, which could fill and block the proxy); ``nexus.logs`` reads it and ``nexus.events()`` parses the logfmt lines.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import tomli_w

from nexus_fast._testing.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NexusStartError(RuntimeError):
    pass


def free_listen(host: str = "127.0.0.1") -> str:
    """``"host:port"`` with a port nothing listens on now."""
    return f"{host}:{free_port(host)}"


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line into a dict (quoted values unescaped)."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        eq = line.find("=", i)
        if eq < 0:
            break
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            chars = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                    chars.append({"n": "\n", "t": "\t"}.get(line[i], line[i]))
                else:
                    chars.append(line[i])
                i += 1
            i += 1
            out[key] = "".join(chars)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out


class NexusProcess:
    """``nexus-fast serve -c <file>`` as a child process."""

    def __init__(self, config: dict[str, Any] | str, *, workers: int | None = None, env: dict[str, str] | None = None,
                 ready_timeout: float = 30.0, stop_timeout: float = 15.0) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="nexus-proc-")
        self.workers = workers
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.log_path = os.path.join(self.tmpdir, "nexus.log")
        # Config and log outlive stop() (tests read them in failure messages); the directory goes at exit.
        atexit.register(shutil.rmtree, self.tmpdir, ignore_errors=True)
        if isinstance(config, dict):
            config = dict(config)
            admin = dict(config.get("admin", {}))
            admin.setdefault("listen", free_listen())
            admin.setdefault("health_check_interval", "500ms")
            config["admin"] = admin
            self.config_path = os.path.join(self.tmpdir, "nexus.toml")
            self.write_config(config)
            self.admin_listen: str = admin["listen"]
            self.admin_tls = bool(admin.get("tls_cert_file"))
        else:
            self.config_path = config
            from nexus_fast.config.load import load_config

            admin_section = load_config(config).config.admin
            if not admin_section.listen:
                raise ValueError(f"{config} has no admin.listen; NexusProcess waits on /ready")
            self.admin_listen = admin_section.listen
            self.admin_tls = admin_section.tls_cert_file is not None

    # --- config ---------------------------------------------------------------------------------------------

    def write_config(self, config: dict[str, Any] | str) -> None:
        """Replace the config file (a dict as TOML, or raw text, e.g. a broken file); ``reload()`` applies it."""
        text = config if isinstance(config, str) else tomli_w.dumps(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, self.config_path)  # atomic: the proxy never reads a half-written file

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        host, _, port = self.admin_listen.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"{'https' if self.admin_tls else 'http'}://{host}:{port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "nexus_fast", "serve", "-c", self.config_path]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        return argv

    def start(self) -> NexusProcess:
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH", "")]))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                            start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                raise NexusStartError(f"nexus-fast exited with {self.returncode} before ready; "
                                      f"command: {shlex.join(self.command())}\n{self.logs}")
            status, _ = self.get("/ready", timeout=0.5)
            if status == 200:
                return self
            time.sleep(0.05)
        self.stop()
        raise NexusStartError(f"nexus-fast not ready after {self.ready_timeout}s\n{self.logs}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def reload(self) -> None:
        """SIGHUP: the proxy re-reads its config file."""
        self.signal(signal.SIGHUP)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        self.returncode = self.process.wait(timeout)
        return self.returncode

    def stop(self) -> int | None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL the whole process group. Returns the exit code."""
        if self.process is None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(10)
        self.returncode = self.process.returncode
        # Workers of a multi-worker run die with their supervisor; make sure, in case it was killed.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process = None
        return self.returncode

    def __enter__(self) -> NexusProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- observing ------------------------------------------------------------------------------------------

    @property
    def logs(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def events(self, event: str | None = None) -> list[dict[str, str]]:
        """Parsed log lines (logfmt or JSON), optionally only those with ``event=<event>``."""
        parsed = []
        for line in self.logs.splitlines():
            if line.startswith("ts="):
                parsed.append(parse_logfmt(line))
            elif line.startswith('{"ts"'):  # server.log_format = "json"
                parsed.append({key: str(value) for key, value in json.loads(line).items()})
        return [e for e in parsed if event is None or e.get("event") == event]

    def wait_for_event(self, event: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(event)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"no {count}x event={event} in {timeout}s\n{self.logs}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET on the admin listener: (status, JSON body or text); status 0 when it cannot connect."""
        return self.request("GET", path, timeout)

    def post(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """POST (empty body) on the admin listener, e.g. ``post("/reload")``."""
        return self.request("POST", path, timeout)

    def request(self, method: str, path: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, Any]:
        """Any request on the admin listener; ``token`` is sent as ``Authorization: Bearer`` (admin.auth_token)."""
        request = urllib.request.Request(self.admin_url + path, method=method, data=b"" if method == "POST" else None)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        # A test's self-signed certificate: the harness checks the proxy, not the PKI.
        context = ssl._create_unverified_context() if self.admin_tls else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            exc.close()
        except (OSError, TimeoutError):
            return 0, None
        text = body.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text
