"""The ``[redis]`` section of nexus.toml (owned by the Redis data plane).

One or more named pools, each with its own listener, as twemproxy's nutcracker.yml has pools::

    [redis.pools.cache]
    listen = "127.0.0.1:22121"
    servers = ["127.0.0.1:7001:1 node1", "127.0.0.1:7002:1 node2"]   # twemproxy's "host:port:weight [name]"
    hash = "fnv1a_64"
    hash_tag = "{}"
    timeout = "400ms"
    auto_eject_hosts = true

Keys shared with twemproxy keep its names and meanings (durations carry explicit units here; the nutcracker.yml
importer converts twemproxy's milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from nexus_fast.config.section import Section, parse_listen
from nexus_fast.config.units import Duration, Size

HASH_NAMES = ("fnv1a_64", "fnv1a_32", "fnv1_64", "fnv1_32", "murmur", "md5", "crc32", "crc32a", "one_at_a_time",
              "xxhash")


@dataclass(frozen=True)
class ServerSpec:
    """One backend from a ``"host:port:weight [name]"`` line."""

    host: str
    port: int
    weight: int
    name: str  # the ring name: the explicit name, else "host:port" ("host" for port 11211, as twemproxy)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_server(line: str) -> ServerSpec:
    """``"host:port:weight [name]"`` (weight optional, default 1) as twemproxy reads its servers list."""
    text = line.strip()
    addr, _, name = text.partition(" ")
    name = name.strip()
    parts = addr.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isdigit() and parts[1].isdigit():
        host, port_text, weight_text = parts
    elif len(parts) >= 2 and parts[-1].isdigit():
        host, port_text = addr.rsplit(":", 1)
        weight_text = "1"
    else:
        raise ValueError(f"{line!r} is not host:port:weight [name]")
    host = host.strip("[]")
    port, weight = int(port_text), int(weight_text)
    if not 0 < port < 65536:
        raise ValueError(f"{line!r}: port out of range")
    if weight < 1:
        raise ValueError(f"{line!r}: weight must be >= 1")
    if not name:
        name = host if port == 11211 else f"{host}:{port}"
    return ServerSpec(host, port, weight, name)


class RedisPoolConfig(Section):
    listen: str = Field("127.0.0.1:22121", description="Where Redis clients connect to this pool (host:port).")
    mode: Literal["ring", "cluster"] = Field(
        "ring", description='"ring": consistent hashing over `servers` (twemproxy); "cluster": a Redis Cluster '
        "whose topology is read from the seed `servers`.")
    servers: list[str] = Field(
        default_factory=list, description='Backends as twemproxy writes them: "host:port:weight [name]". In '
        "cluster mode, seed nodes (weight ignored).")
    hash: str = Field("fnv1a_64", description="Key hash: " + ", ".join(HASH_NAMES) + " (twemproxy's names; "
                      "fnv1a_64 is twemproxy's 32-bit variant).")
    hash_tag: str = Field("", description='Two characters delimiting the hashed part of a key, e.g. "{}"; '
                          "empty hashes the whole key.")
    distribution: Literal["ketama", "modula", "random"] = Field(
        "ketama", description="Key distribution over `servers`, as twemproxy's `distribution`.")
    timeout: Duration = Field(0.4, description="A request without a reply after this long fails with a clear "
                              "error and its server connection is closed (twemproxy's `timeout`, there in ms).")
    connect_timeout: Duration = Field(1.0, description="How long a server connect may take.")
    server_connections: int = Field(1, ge=1, le=64, description="Server connections per node (per RESP version); "
                                    "many clients' requests are pipelined onto them.")
    preconnect: bool = Field(False, description="Connect to every node at start instead of on first use.")
    auto_eject_hosts: bool = Field(False, description="Take a node out of the ring after `server_failure_limit` "
                                   "consecutive failures.")
    server_failure_limit: int = Field(2, ge=1, description="Consecutive failures that eject a node.")
    server_retry_timeout: Duration = Field(30.0, description="How long an ejected node stays out before it is "
                                           "probed and, if it answers, put back.")
    health_check_interval: Duration = Field(1.0, description="Active PING checks of every node; 0 disables.")
    outlier_detection: bool = Field(False, description="Ring mode with `auto_eject_hosts`: eject a node whose "
                                    "request latency (moving average) exceeds `outlier_latency_factor` times the "
                                    "median of its peers' and `outlier_min_latency`; it returns like any ejected "
                                    "node (after `server_retry_timeout`, on a good PING). At most one node is out "
                                    "for latency at a time, and only with at least two live peers to compare.")
    outlier_latency_factor: float = Field(5.0, ge=1.5, description="How many times slower than its peers' median "
                                          "a node must be to count as an outlier.")
    outlier_min_latency: Duration = Field(0.005, description="A node is never an outlier below this latency "
                                          "(idle-fast nodes differ by noise, not by health).")
    replication_factor: int = Field(1, ge=1, le=8, description="Each write goes to this many distinct ring "
                                    "successors of its key; reads go to the first healthy one (ring mode).")
    read_from_replicas: bool = Field(False, description="Cluster mode: send read-only commands to replicas.")
    cluster_refresh_interval: Duration = Field(10.0, description="Cluster mode: re-read the slot map this often "
                                               "(and at once after a MOVED).")
    near_cache: bool = Field(False, description="Serve repeated GETs from the proxy's memory, kept correct by "
                             "Redis CLIENT TRACKING over RESP3 (invalidation pushes) and by dropping keys written "
                             "through the proxy. Ring mode, replication_factor 1, no compression.")
    near_cache_size: Size = Field(64 * 1024 * 1024, description="Byte budget of the near-cache (keys, replies and "
                                  "per-entry overhead); least recently used entries go first.")
    near_cache_max_item: Size = Field(64 * 1024, description="Largest entry the near-cache keeps.")
    compression: bool = Field(False, description="Store string values of at least `compression_threshold` bytes "
                              "lz4-compressed; clients read back exactly what they wrote.")
    compression_threshold: Size = Field(1024, description="Smallest value that is compressed.")
    password: SecretStr | None = Field(None, description="Clients must AUTH with this password (twemproxy's "
                                       "`redis_auth`).")
    users: dict[str, SecretStr] = Field(default_factory=dict, description="ACL-style users: AUTH <user> "
                                        "<password> (and HELLO ... AUTH).")
    backend_username: str | None = Field(None, description="Username the proxy sends to the nodes (ACL).")
    backend_password: SecretStr | None = Field(None, description="Password the proxy sends to the nodes.")
    database: int = Field(0, ge=0, description="Database the proxy SELECTs on its node connections "
                          "(twemproxy's `redis_db`).")
    max_pending_replies: int = Field(4096, ge=16, description="Backpressure: a client with this many replies "
                                     "outstanding is not read until they drain to half.")
    client_connections: int = Field(0, ge=0, description="Most client connections at once; 0 is unlimited.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for line in value:
            parse_server(line)
        return value

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if value not in HASH_NAMES:
            raise ValueError(f"unknown hash {value!r}; choose one of {', '.join(HASH_NAMES)}")
        return value

    @field_validator("hash_tag")
    @classmethod
    def _hash_tag(cls, value: str) -> str:
        if value and len(value) != 2:
            raise ValueError('hash_tag must be exactly two characters, such as "{}"')
        return value

    @model_validator(mode="after")
    def _needs_servers(self) -> RedisPoolConfig:
        if not self.servers:
            raise ValueError("a pool needs at least one server")
        if self.replication_factor > 1 and self.mode == "cluster":
            raise ValueError("replication_factor applies to ring mode; Redis Cluster replicates itself")
        if self.near_cache and (self.mode != "ring" or self.replication_factor > 1 or self.compression):
            raise ValueError("near_cache needs ring mode, replication_factor 1 and compression off (its GETs must "
                             "travel the tracked RESP3 connection and its replies be the values themselves)")
        if self.outlier_detection and (self.mode != "ring" or not self.auto_eject_hosts):
            raise ValueError("outlier_detection needs ring mode with auto_eject_hosts = true (an ejected node "
                             "must leave the ring)")
        return self

    def server_specs(self) -> list[ServerSpec]:
        return [parse_server(line) for line in self.servers]

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class RedisConfig(Section):
    pools: dict[str, RedisPoolConfig] = Field(default_factory=dict, description="Named pools, each with its "
                                              "own listener.")
