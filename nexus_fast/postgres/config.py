"""The ``[postgres]`` section of nexus.toml (owned by the PostgreSQL data plane)."""

from __future__ import annotations

from pydantic import Field

from nexus_fast.config.section import Section, parse_listen


class PostgresConfig(Section):
    listen: str = Field("127.0.0.1:6432", description="Where PostgreSQL clients connect.")

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)
