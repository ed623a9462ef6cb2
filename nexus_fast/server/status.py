"""``nexus-fast status -c FILE``: what the running instance of a config says about itself, in one screen.

Reads the instance's admin HTTP (the address, TLS and token come from FILE): every plane's backends with their
health and reasons, the running config's digest, the last reload's outcome and whether FILE has drifted from what
runs. Exit 0 when every backend is up and nothing drifted, 1 otherwise, 2 when the instance cannot be reached.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any, TextIO

from nexus_fast.config.schema import NexusConfig


def _get(config: NexusConfig, path: str, timeout: float) -> tuple[int, dict[str, Any]]:
    admin = config.admin
    assert admin.listen is not None
    host, _, port = admin.listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    scheme = "https" if admin.tls_cert_file else "http"
    request = urllib.request.Request(f"{scheme}://{host}:{port}{path}")
    if admin.auth_token is not None:
        request.add_header("Authorization", f"Bearer {admin.auth_token.get_secret_value()}")
    # The operator's own instance: reachability and content matter here, not the admin certificate's chain.
    context = ssl._create_unverified_context() if admin.tls_cert_file else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, json.loads(body) if body.startswith(b"{") else {}


def run_status(config: NexusConfig, digest: str, out: TextIO, timeout: float = 5.0) -> int:
    if not config.admin.listen:
        print("no admin.listen in the config: nothing to ask", file=out)
        return 2
    try:
        health_status, health = _get(config, "/health", timeout)
        config_status, running = _get(config, "/config", timeout)
    except (OSError, ValueError) as exc:
        print(f"cannot reach nexus-fast at {config.admin.listen}: {exc}", file=out)
        return 2
    healthy = health_status == 200
    print(f"nexus-fast at {config.admin.listen} (answered by worker {health.get('worker')}, pid {health.get('pid')}): "
          f"{'up' if healthy else 'DOWN'}", file=out)
    for plane, state in sorted(health.get("planes", {}).items()):
        print(f"  [{plane}] {state.get('status')}{'  ' + state['reason'] if state.get('reason') else ''}", file=out)
        for backend in state.get("backends", []):
            mark = "up  " if backend["healthy"] else "DOWN"
            latency = f" {backend['latency_ms']:.1f}ms" if backend.get("latency_ms") is not None else ""
            reason = f"  {backend['reason']}" if backend.get("reason") else ""
            print(f"    {mark} {backend['name']:<28} {backend['address']}{latency}{reason}", file=out)
    drifted = False
    if config_status == 200:
        reload = running.get("last_reload", {})
        print(f"  config {running.get('digest', '')[:12]} from {running.get('source')}; last reload: "
              f"{reload.get('status')}{' (' + reload['reason'].splitlines()[0] + ')' if reload.get('reason') else ''}",
              file=out)
        drifted = running.get("digest") != digest
        if drifted:
            print(f"  DRIFT: the file you gave has digest {digest[:12]}; run `nexus-fast config diff` for the keys",
                  file=out)
    else:
        print(f"  /config answered {config_status} (admin.auth_token?)", file=out)
    return 0 if healthy and not drifted else 1
