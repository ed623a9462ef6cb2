"""Config drift: which keys differ between the config a process runs and a file (or another instance).

A deployment drifts when the file on disk was edited but not reloaded, or a reload was rejected, or two instances
behind one load balancer run different configs. Digests (sha256 of the effective config, secrets included) say
*whether* two configs differ; ``diff`` says *which key paths* differ, comparing the effective configs (defaults
filled in, units normalised, so ``"1000ms"`` and ``"1s"`` are the same value). Secrets are compared but never
printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexus_fast.config.load import to_dict
from nexus_fast.config.schema import NexusConfig

MISSING = "<unset>"


@dataclass(frozen=True)
class Drift:
    key_path: str
    running: Any  # value in the running config (MISSING when absent); "**********" for secrets
    other: Any

    def __str__(self) -> str:
        return f"{self.key_path}: running {_show(self.running)}, file {_show(self.other)}"


def _show(value: Any) -> str:
    return value if value == MISSING else repr(value)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values (a changed server list is one drifted key)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def diff_dicts(running: dict[str, Any], other: dict[str, Any], secret_paths: frozenset[str] = frozenset()) -> list[Drift]:
    a, b = flatten(running), flatten(other)
    drifts = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, MISSING), b.get(key, MISSING)
        if left != right:
            if key in secret_paths:
                left = "**********" if left != MISSING else left
                right = "**********" if right != MISSING else right
            drifts.append(Drift(key, left, right))
    return drifts


def diff(running: NexusConfig, other: NexusConfig) -> list[Drift]:
    """Key paths whose effective values differ (secrets compared in clear, shown masked)."""
    plain_a, plain_b = to_dict(running), to_dict(other)
    masked = flatten(to_dict(running, redact=True)) | flatten(to_dict(other, redact=True))
    secrets = frozenset(k for k, v in masked.items() if v == "**********")
    return diff_dicts(plain_a, plain_b, secrets)


def fetch_running(url: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """The ``/config`` answer of a running instance (``url`` is its admin base URL; ``token``: admin.auth_token)."""
    import json
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/config")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def run_diff(path: str, against: str | None, out: Any) -> int:
    """``nexus-fast config diff``: 0 when the same, 1 when drifted (keys listed), 2 when something cannot be read."""
    from nexus_fast.config.errors import ConfigError
    from nexus_fast.config.load import load_config

    try:
        mine = load_config(path)
        if against is not None and not against.startswith(("http://", "https://")):
            theirs = load_config(against)
            drifts = diff(theirs.config, mine.config)
            label = against
            same = theirs.digest == mine.digest
        else:
            admin = mine.config.admin.listen
            if against is None and not admin:
                print(f"{path}: no admin.listen to find the running instance; pass --against URL", file=out)
                return 2
            url = against or "http://" + str(admin).replace("0.0.0.0", "127.0.0.1")
            token = mine.config.admin.auth_token  # the file being compared carries the instance's token
            running = fetch_running(url, token.get_secret_value() if token else None)
            drifts = diff_dicts(running["config"], to_dict(mine.config, redact=True))
            label = f"{url} (pid {running.get('pid')})"
            same = running["digest"] == mine.digest
    except ConfigError as exc:
        print(str(exc), file=out)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read the running config: {exc}", file=out)
        return 2
    if same:
        print(f"no drift: {label} runs {path} (digest {mine.digest[:12]})", file=out)
        return 0
    print(f"drift between {label} (running) and {path} (file):", file=out)
    for drift in drifts:
        print(f"  {drift}", file=out)
    if not drifts:
        print("  a secret differs (values are not shown)", file=out)
    return 1
