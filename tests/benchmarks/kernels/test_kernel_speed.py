"""pytest-benchmark suite for the kernels (opt-in: ``pytest tests/benchmarks/kernels --benchmark-only``).

Each case benchmarks the kernel with the fixture and times its naive reference once more, recording items per
second and the speed-up in ``extra_info`` (shown with ``--benchmark-columns`` or in ``--benchmark-json``).
"""

from __future__ import annotations

import pytest

from bench.kernels import KernelCase, kernel_cases

CASES = kernel_cases(scale=0.25)


@pytest.mark.parametrize("case", CASES, ids=[c.kernel.strip() for c in CASES])
def test_kernel_speed(benchmark, case: KernelCase) -> None:
    benchmark.group = case.kernel
    benchmark(case.run)
    result = case.measure(repeat=3)
    benchmark.extra_info.update(
        items=case.items,
        items_per_s=result.items_per_s,
        reference_items_per_s=result.reference_items_per_s,
        speedup=result.speedup,
    )
    if case.target is not None:  # the other rows compare two fast paths and are reported, not judged
        assert result.speedup >= case.target, f"{case.kernel}: {result.speedup:.1f}x over the reference"
