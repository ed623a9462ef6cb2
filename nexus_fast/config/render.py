"""Writing a config back out as nexus.toml: what ``config check`` and ``config import`` print.

The effective config is dumped with its units written back (``"30s"``, ``"64MiB"``) and unset keys left out, then
serialised with ``tomli_w`` (the write-side companion of the standard library's ``tomllib``), so the output is a
file ``nexus-fast serve -c`` accepts as is.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from nexus_fast.config.load import LoadedConfig, to_dict


def _drop_empty(value: Any) -> Any:
    # TOML has no null; empty tables would print as noise headers.
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def to_toml(loaded: LoadedConfig, redact: bool = False) -> str:
    """The effective config of ``loaded`` as nexus.toml text, headed by where it came from."""
    header = [f"# effective configuration of {loaded.source} ({loaded.file_format})", f"# digest {loaded.digest}"]
    header += [f"# warning: {w}" for w in loaded.warnings]
    body = tomli_w.dumps(_drop_empty(to_dict(loaded.config, redact=redact)))
    return "\n".join(header) + "\n\n" + body
