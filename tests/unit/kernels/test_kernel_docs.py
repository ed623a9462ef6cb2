"""The runnable examples on the kernels' API pages run (and their asserts hold)."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "api"
PAGES = [
    "balance-selectors.md",
    "kernels-hashing.md",
    "kernels-eviction.md",
    "cache-eviction.md",
    "kernels-anomaly.md",
    "observe-anomaly.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_api_page_examples_run(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert blocks, f"{page} has no runnable example"
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out  # every example prints what it shows


def test_warm_up_loads_every_kernel_module() -> None:
    from nexus_fast.kernels.warmup import warm_up

    spent = warm_up()
    assert set(spent) == {"hashing", "eviction", "anomaly"}
    assert all(s >= 0.0 for s in spent.values())
