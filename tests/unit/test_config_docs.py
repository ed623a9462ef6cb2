"""docs/config.md is generated from the schema and kept current: every key is documented."""

from __future__ import annotations

import os

from nexus_fast.config.reference import render_markdown, type_name, undocumented_keys
from nexus_fast.config.schema import NexusConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_docs_config_md_is_up_to_date() -> None:
    with open(os.path.join(ROOT, "docs", "config.md"), encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == render_markdown(), (
        "docs/config.md is stale: run `python -m nexus_fast config docs > docs/config.md`")


def test_every_key_has_a_description() -> None:
    assert undocumented_keys() == []


def test_every_section_and_key_appears() -> None:
    page = render_markdown()
    for section in ("[server]", "[admin]", "[postgres]"):
        assert f"## `{section}`" in page
    for key in NexusConfig.model_fields["server"].annotation.model_fields:
        assert f"| `{key}` |" in page
    assert '| `shutdown_timeout` | duration | `"30s"` |' in page


def test_type_names_are_readable() -> None:
    fields = NexusConfig.model_fields["admin"].annotation.model_fields
    assert type_name(fields["health_check_interval"].annotation, fields["health_check_interval"]) == "duration"
    assert type_name(fields["postgres_health_listen"].annotation, fields["postgres_health_listen"]) == "string (optional)"
