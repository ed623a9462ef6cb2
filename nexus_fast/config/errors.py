"""The one error type for a config that cannot be used: it names the file, the key path and the reason."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConfigProblem:
    key_path: str  # e.g. "redis.pools.cache.hash"
    reason: str

    def __str__(self) -> str:
        return f"{self.key_path or '<root>'}: {self.reason}"


@dataclass
class ConfigError(Exception):
    source: str
    problems: list[ConfigProblem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.source}: invalid configuration ({len(self.problems)} problem(s))"]
        lines += [f"  {self.source}: {p}" for p in self.problems]
        return "\n".join(lines)
