"""The base class of every config section and the shared ``host:port`` parser."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) into a (host, port) pair."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"{value!r} is not host:port")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} has no valid port")
    return host, int(port_text)
