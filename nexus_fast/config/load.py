"""Read a config file of any supported format into a validated ``NexusConfig``.

Three formats are recognised, so a user of either peer can point nexus-fast at the file they already have:
``nexus.toml`` (ours), PgBouncer's ``pgbouncer.ini`` and twemproxy's ``nutcracker.yml``. The peer files are first
translated into the nexus.toml shape by their importers (which apply the peer's units and meanings and report
keys they do not understand), then validated by the same schema, so every path ends in the same checks.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from nexus_fast.config.errors import ConfigError, ConfigProblem
from nexus_fast.config.schema import NexusConfig

FileFormat = Literal["toml", "pgbouncer", "nutcracker"]


@dataclass
class LoadedConfig:
    """A validated config with where it came from: what reload, drift and ``config check`` report on."""

    config: NexusConfig
    source: str
    file_format: FileFormat
    digest: str  # sha256 of the effective config, for drift detection
    warnings: list[str] = field(default_factory=list)


def detect_format(path: str, text: str) -> FileFormat:
    lower = path.lower()
    if lower.endswith(".toml"):
        return "toml"
    if lower.endswith(".ini"):
        return "pgbouncer"
    if lower.endswith((".yml", ".yaml")):
        return "nutcracker"
    stripped = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("#", ";"))]
    if any(ln.lower() in ("[pgbouncer]", "[databases]") for ln in stripped):
        return "pgbouncer"
    if stripped and stripped[0].endswith(":") and not stripped[0].startswith("["):
        return "nutcracker"
    return "toml"


def problems_from_validation(error: ValidationError) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown key"
        elif reason.startswith("Value error, "):
            reason = reason[len("Value error, "):]
        problems.append(ConfigProblem(path, reason))
    return problems


def validate(data: dict[str, Any], source: str) -> NexusConfig:
    try:
        return NexusConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation(exc)) from None


def to_dict(config: NexusConfig, redact: bool = False) -> dict[str, Any]:
    """The effective config as plain data (units written back); secrets masked when ``redact``."""
    data = config.model_dump(mode="json", exclude_none=True)
    if not redact:
        data = _reveal(config, data)
    return data


def _reveal(model: Any, data: Any) -> Any:
    # pydantic masks SecretStr when dumping; an imported config must keep the real secret to be usable.
    from pydantic import BaseModel, SecretStr

    if isinstance(model, BaseModel) and isinstance(data, dict):
        for name in list(data):
            data[name] = _reveal(getattr(model, name, None), data[name])
    elif isinstance(model, SecretStr):
        return model.get_secret_value()
    elif isinstance(model, dict) and isinstance(data, dict):
        for key in list(data):
            data[key] = _reveal(model.get(key), data[key])
    elif isinstance(model, (list, tuple)) and isinstance(data, list):
        return [_reveal(m, d) for m, d in zip(model, data, strict=False)]
    return data


def digest_of(config: NexusConfig) -> str:
    import json

    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_text(text: str, source: str, file_format: FileFormat) -> tuple[dict[str, Any], list[str]]:
    """The raw nexus.toml-shaped data of a file's text, and the importer's warnings."""
    if file_format == "toml":
        try:
            return tomllib.loads(text), []
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [ConfigProblem("", f"not valid TOML: {exc}")]) from None
    base_dir = os.path.dirname(os.path.abspath(source))
    try:
        if file_format == "pgbouncer":
            from nexus_fast.config.pgbouncer_ini import import_pgbouncer_ini

            return import_pgbouncer_ini(text, source, base_dir)
        from nexus_fast.config.nutcracker_yml import import_nutcracker_yml

        return import_nutcracker_yml(text, source, base_dir)
    except ConfigError:
        raise
    except Exception as exc:  # an importer bug must still end in "file: reason", never a traceback at start-up
        raise ConfigError(source, [ConfigProblem("", f"cannot import this {file_format} file: {exc!r}")]) from None


def load_config(path: str) -> LoadedConfig:
    """Read, translate and validate ``path``; raises ``ConfigError`` naming the file, key path and reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(path, [ConfigProblem("", f"cannot read file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [ConfigProblem("", f"not UTF-8 text (byte {exc.start})")]) from None
    file_format = detect_format(path, text)
    data, warnings = parse_text(text, path, file_format)
    config = validate(data, path)
    return LoadedConfig(config, path, file_format, digest_of(config), warnings)
