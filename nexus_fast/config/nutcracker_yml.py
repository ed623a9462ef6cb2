"""twemproxy's ``nutcracker.yml`` read as a nexus.toml ``[redis]`` section (drop-in: point nexus-fast at it).

Each top-level YAML key is a pool (twemproxy's "server pool") and becomes ``redis.pools.<name>``. Keys are taken
with twemproxy's meanings and units (nutcracker README, "Configuration"): ``timeout`` and
``server_retry_timeout`` are milliseconds, ``servers`` are ``"host:port:weight [name]"`` lines, ``redis_auth`` is
the password clients must send, ``redis_db`` the database selected on server connections. Keys that only make
sense for memcached, or that nexus-fast does not use (``backlog``, ``client_connections`` on some builds), are
reported as warnings, never silently dropped; a memcached pool (``redis: false``) is an error, since nexus-fast
proxies Redis only.
"""

from __future__ import annotations

from typing import Any

import yaml

from nexus_fast.config.errors import ConfigError, ConfigProblem

_IGNORED = {
    "backlog": "the listen backlog is chosen by nexus-fast",
    "mbuf_size": "nexus-fast has no mbufs",
}


def _ms(value: Any, where: str, problems: list[ConfigProblem]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(ConfigProblem(where, f"{value!r} is not a number of milliseconds"))
        return None
    return f"{value}ms"


def import_nutcracker_yml(text: str, source: str, base_dir: str) -> tuple[dict[str, Any], list[str]]:
    """The nexus.toml-shaped dict for a nutcracker.yml, and warnings about keys that were not carried over."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(source, [ConfigProblem("", "expected one or more pools (name: {listen: ..., servers: "
                                                  "[...]})")])
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    pools: dict[str, dict[str, Any]] = {}
    for name, body in data.items():
        where = f"redis.pools.{name}"
        if not isinstance(body, dict):
            problems.append(ConfigProblem(where, "a pool must be a mapping of twemproxy keys"))
            continue
        pool: dict[str, Any] = {}
        if body.get("redis") is not True:
            problems.append(ConfigProblem(f"{where}.redis", "nexus-fast proxies Redis only: set `redis: true` "
                                          "(memcached pools are not supported)"))
        for key, value in body.items():
            kw = f"{where}.{key}"
            if key == "redis":
                continue
            if key == "listen":
                text_value = str(value)
                if text_value.startswith("/"):
                    problems.append(ConfigProblem(kw, "unix socket listeners are not supported; use host:port"))
                    continue
                # twemproxy allows "host:port perm"; the permission applies to unix sockets only
                pool["listen"] = text_value.split()[0]
            elif key == "servers":
                if not isinstance(value, list):
                    problems.append(ConfigProblem(kw, "servers must be a list of \"host:port:weight [name]\""))
                    continue
                pool["servers"] = [str(v) for v in value]
            elif key in ("hash", "hash_tag", "distribution"):
                pool[key] = str(value)
            elif key == "timeout":
                converted = _ms(value, kw, problems)
                if converted is not None:
                    pool["timeout"] = converted
            elif key == "server_retry_timeout":
                converted = _ms(value, kw, problems)
                if converted is not None:
                    pool["server_retry_timeout"] = converted
            elif key in ("auto_eject_hosts", "preconnect"):
                pool[key] = bool(value)
            elif key == "server_failure_limit":
                pool[key] = value
            elif key == "server_connections":
                pool[key] = value
            elif key == "client_connections":
                pool[key] = value
            elif key == "redis_auth":
                # twemproxy both requires it from clients and sends it to the servers
                pool["password"] = str(value)
                pool["backend_password"] = str(value)
            elif key == "redis_db":
                pool["database"] = value
            elif key in _IGNORED:
                warnings.append(f"{source}: {kw}: ignored ({_IGNORED[key]})")
            else:
                problems.append(ConfigProblem(kw, "not a twemproxy key that nexus-fast understands"))
        pools[str(name)] = pool
    if problems:
        raise ConfigError(source, problems)
    return {"redis": {"pools": pools}}, warnings
