"""The ``[redis]`` section of nexus.toml (owned by the Redis data plane)."""

from __future__ import annotations

from pydantic import Field

from nexus_fast.config.section import Section


class RedisConfig(Section):
    pools: dict[str, dict] = Field(default_factory=dict, description="Named pools, each with its own listener.")
