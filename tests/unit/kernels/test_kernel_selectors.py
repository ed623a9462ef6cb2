"""Load-balancing selectors, run over the compiled module and its pure-Python twin."""

from __future__ import annotations

import collections
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast import _extensions
from nexus_fast.balance import selectors as public
from tests.conftest import load_twin, twin_params

ALGORITHMS = public.ALGORITHMS


@pytest.fixture(params=twin_params("selectors"))
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    return load_twin("selectors", request.param)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(impl: types.ModuleType, algorithm: str, weights: list[float], **kw: object):
    kw.setdefault("slow_start", 0.0)
    kw.setdefault("seed", 7)
    kw.setdefault("clock", FakeClock())
    kw.setdefault("ewma_alpha", 0.3)
    return impl.SELECTORS[algorithm](weights, kw["slow_start"], kw["seed"], kw["clock"], kw["ewma_alpha"])


def test_public_factory_validates_and_builds_every_algorithm() -> None:
    for algorithm in ALGORITHMS:
        sel = public.create_selector(algorithm, 3, seed=1)
        assert isinstance(sel, public.Selector)
        assert sel.algorithm == algorithm
        assert 0 <= sel.select([True, True, True], key=b"k") < 3
    with pytest.raises(ValueError, match="unknown algorithm"):
        public.create_selector("fastest", 2)
    with pytest.raises(ValueError, match="weights"):
        public.create_selector("random", 2, [1.0])
    with pytest.raises(ValueError, match="finite"):
        public.create_selector("random", 2, [1.0, -1.0])
    with pytest.raises(ValueError, match="finite"):
        public.create_selector("random", 2, [1.0, float("nan")])
    with pytest.raises(ValueError, match="n_endpoints"):
        public.create_selector("random", 0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_no_healthy_endpoint_gives_minus_one_and_wrong_length_is_refused(impl, algorithm: str) -> None:
    sel = make(impl, algorithm, [1.0, 2.0])
    assert sel.select([False, False], key=b"x") == -1
    with pytest.raises(ValueError):
        sel.select([True])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_weight_zero_drains_an_endpoint(impl, algorithm: str) -> None:
    sel = make(impl, algorithm, [0.0, 1.0, 2.0])
    picks = {sel.select([True, True, True], key=str(k).encode()) for k in range(200)}
    assert 0 not in picks and picks <= {1, 2}
    assert sel.select([True, False, False], key=b"k") == -1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unhealthy_endpoints_are_never_chosen(impl, algorithm: str) -> None:
    sel = make(impl, algorithm, [1.0, 3.0, 2.0, 1.0])
    healthy = [True, False, True, False]
    for k in range(300):
        i = sel.select(healthy, key=str(k).encode())
        assert healthy[i]
        sel.on_start(i)
        sel.on_finish(i, 0.001 * (i + 1))


def test_round_robin_cycles_over_healthy(impl) -> None:
    sel = make(impl, "round_robin", [1.0, 5.0, 1.0])
    assert [sel.select([True, True, True]) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    assert [sel.select([True, False, True]) for _ in range(4)] == [0, 2, 0, 2]


def test_smooth_weighted_round_robin_matches_nginx_sequence(impl) -> None:
    # nginx's commit message for smooth WRR: weights {a:5, b:1, c:1} give "a a b a c a a".
    sel = make(impl, "weighted_round_robin", [5.0, 1.0, 1.0])
    assert [sel.select([True] * 3) for _ in range(7)] == [0, 0, 1, 0, 2, 0, 0]


def test_least_connections_prefers_idle_per_weight(impl) -> None:
    sel = make(impl, "least_connections", [1.0, 1.0, 2.0])
    for _ in range(2):
        sel.on_start(0)
    sel.on_start(1)
    sel.on_start(2)
    # costs: (2+1)/1, (1+1)/1, (1+1)/2 -> endpoint 2
    assert sel.select([True] * 3) == 2
    assert sel.active == [2, 1, 1]
    sel.on_finish(0, 0.01)
    sel.on_finish(0, 0.01)
    sel.on_finish(0, 0.01)  # never below zero
    assert sel.active[0] == 0


def test_ip_hash_is_sticky_and_stable_when_an_endpoint_leaves(impl) -> None:
    sel = make(impl, "ip_hash", [1.0] * 5)
    keys = [f"10.0.{k // 256}.{k % 256}".encode() for k in range(2000)]
    before = [sel.select([True] * 5, key=k) for k in keys]
    assert before == [sel.select([True] * 5, key=k) for k in keys]
    counts = collections.Counter(before)
    assert all(300 <= counts[i] <= 500 for i in range(5)), counts
    after = [sel.select([True, True, False, True, True], key=k) for k in keys]
    for b, a in zip(before, after, strict=True):
        if b != 2:
            assert a == b  # only the leaving endpoint's keys move
        else:
            assert a != 2


def test_random_follows_weights(impl) -> None:
    sel = make(impl, "random", [1.0, 3.0])
    counts = collections.Counter(sel.select([True, True]) for _ in range(4000))
    assert 0.7 < counts[1] / 4000 < 0.8


def test_p2c_ewma_avoids_the_slow_endpoint(impl) -> None:
    sel = make(impl, "p2c_ewma", [1.0] * 4)
    latency = [0.001, 0.001, 0.050, 0.001]
    counts: collections.Counter[int] = collections.Counter()
    for _ in range(2000):
        i = sel.select([True] * 4)
        counts[i] += 1
        sel.on_start(i)
        sel.on_finish(i, latency[i])
    assert counts[2] < 0.1 * 2000, counts
    assert sel.ewma_latency[2] == pytest.approx(0.050)


def test_slow_start_ramps_a_recovered_endpoint(impl) -> None:
    clock = FakeClock()
    sel = make(impl, "weighted_round_robin", [1.0, 1.0], slow_start=10.0, clock=clock)
    sel.select([True, True])
    sel.select([True, False])
    clock.now += 1.0
    sel.select([True, True])  # endpoint 1 recovers now: 10% of its weight
    assert sel.effective_weights == pytest.approx([1.0, 0.1])
    clock.now += 5.0
    picks = collections.Counter(sel.select([True, True]) for _ in range(1000))
    assert sel.effective_weights == pytest.approx([1.0, 0.5])
    assert 250 < picks[1] < 420
    clock.now += 5.0
    sel.select([True, True])
    assert sel.effective_weights == pytest.approx([1.0, 1.0])


def test_slow_start_round_robin_skips_a_ramping_endpoint_often(impl) -> None:
    clock = FakeClock()
    sel = make(impl, "round_robin", [1.0, 1.0], slow_start=10.0, clock=clock)
    sel.select([True, False])
    sel.select([True, True])  # recovers at 10%
    picks = collections.Counter(sel.select([True, True]) for _ in range(2000))
    assert picks[1] < 400


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    weights=st.lists(st.one_of(st.just(0.0), st.floats(0.1, 10.0)), min_size=1, max_size=8),
    seed=st.integers(0, 2**64 - 1),
    steps=st.lists(
        st.tuples(st.integers(0, 255), st.floats(0.0, 1.0), st.binary(max_size=8), st.booleans()), max_size=40
    ),
)
def test_compiled_and_pure_make_identical_choices(algorithm, weights, seed, steps) -> None:
    native = _extensions.load_native("selectors")
    if native is None:
        pytest.skip("compiled selectors unavailable (NEXUS_FAST_NO_EXTENSIONS or no build)")
    pure = _extensions.pure("selectors")
    clocks = (FakeClock(), FakeClock())
    sels = [
        make(m, algorithm, weights, seed=seed, slow_start=3.0, clock=c)
        for m, c in zip((native, pure), clocks, strict=True)
    ]
    n = len(weights)
    for mask, latency, key, finish in steps:
        healthy = [bool(mask >> (i % 8) & 1) for i in range(n)]
        for c in clocks:
            c.now += latency
        got = [s.select(healthy, key=key or None) for s in sels]
        assert got[0] == got[1]
        if got[0] >= 0:
            for s in sels:
                s.on_start(got[0])
                if finish:
                    s.on_finish(got[0], latency)
        assert sels[0].active == sels[1].active
        assert sels[0].effective_weights == pytest.approx(sels[1].effective_weights)
        assert sels[0].ewma_latency == pytest.approx(sels[1].ewma_latency)


@settings(max_examples=30, deadline=None)
@given(weights=st.lists(st.integers(1, 6), min_size=1, max_size=6), rounds=st.integers(1, 3))
def test_smooth_wrr_is_exactly_proportional_per_cycle(weights, rounds) -> None:
    # nginx's smooth WRR picks endpoint i exactly w_i times in every sum(w) consecutive picks.
    for which in ("native", "pure"):
        module = _extensions.load_native("selectors") if which == "native" else _extensions.pure("selectors")
        if module is None:
            continue
        sel = make(module, "weighted_round_robin", [float(w) for w in weights])
        for _ in range(rounds):
            picks = collections.Counter(sel.select([True] * len(weights)) for _ in range(sum(weights)))
            assert [picks[i] for i in range(len(weights))] == weights


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 8), gone=st.integers(0, 7), seed=st.integers(0, 2**32))
def test_ip_hash_moves_only_the_keys_of_a_leaving_endpoint(n, gone, seed) -> None:
    gone %= n
    sel = public.create_selector("ip_hash", n, seed=seed)
    keys = [b"%d:%d" % (seed, k) for k in range(200)]
    before = [sel.select([True] * n, key=k) for k in keys]
    after = [sel.select([i != gone for i in range(n)], key=k) for k in keys]
    assert all(a == b for a, b in zip(after, before, strict=True) if b != gone)
    assert gone not in after
