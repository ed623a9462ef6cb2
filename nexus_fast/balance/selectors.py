"""Load-balancing selectors: pick one endpoint per request, aware of endpoint health.

``create_selector(algorithm, n_endpoints, weights)`` returns a :class:`Selector`. The caller keeps the health of
its endpoints (a list of bools, one per endpoint, in a fixed order) and asks for an endpoint per request::

    sel = create_selector("p2c_ewma", 3)
    i = sel.select([True, True, False])   # -1 when nothing is healthy
    sel.on_start(i)
    ...                                   # run the request on endpoint i
    sel.on_finish(i, latency_s=0.004)

Algorithms (``ALGORITHMS``):

- ``round_robin``: each healthy endpoint in turn, weights ignored.
- ``weighted_round_robin``: nginx's smooth weighted round robin (interleaves, never bursts one endpoint).
- ``least_connections``: fewest active requests per unit of weight (``on_start``/``on_finish`` keep the count).
- ``ip_hash``: weighted rendezvous hashing of ``key`` (the client address, a session id): the same key goes to the
  same endpoint, and when an endpoint leaves only its own keys move. Without a key it behaves as round robin.
- ``random``: weighted random choice.
- ``p2c_ewma``: power of two choices over EWMA latency x (active + 1) / weight.

Health: endpoints whose flag is false are never chosen. Slow start: with ``slow_start`` > 0 seconds, an endpoint
that turns healthy again ramps its effective weight from 10% to 100% over that window (``round_robin`` skips it
with the complementary probability); ``ip_hash`` applies the ramp to its weights, moving keys back gradually.

The implementation is ``native/selectors.pyx`` when compiled, else its pure-Python twin
``nexus_fast.balance._selectors_py`` (``NEXUS_FAST_NO_EXTENSIONS=1`` forces the twin); both make identical choices
for the same seed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from nexus_fast import _extensions

_impl = _extensions.load("selectors")

ALGORITHMS: tuple[str, ...] = (
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "ip_hash",
    "random",
    "p2c_ewma",
)


@runtime_checkable
class Selector(Protocol):
    """What every selector offers; ``select`` returns an endpoint index or -1."""

    algorithm: str
    n_endpoints: int

    def select(self, healthy: Sequence[bool], key: bytes | None = None) -> int: ...

    def on_start(self, i: int) -> None: ...

    def on_finish(self, i: int, latency_s: float) -> None: ...

    @property
    def active(self) -> list[int]: ...

    @property
    def ewma_latency(self) -> list[float]: ...

    @property
    def effective_weights(self) -> list[float]: ...


def create_selector(
    algorithm: str,
    n_endpoints: int,
    weights: Sequence[float] | None = None,
    *,
    slow_start: float = 0.0,
    seed: int | None = None,
    ewma_alpha: float = 0.3,
    clock: Callable[[], float] = time.monotonic,
) -> Selector:
    """A selector over ``n_endpoints`` endpoints.

    ``weights`` (default all 1.0) must be finite and >= 0; an endpoint of weight 0 is drained (never chosen, as
    HAProxy's ``weight 0``), and when every healthy endpoint is drained ``select`` returns -1. ``slow_start`` is the ramp-up window in seconds after
    an endpoint recovers (0 disables it); ``seed`` fixes the random stream (``random``, ``p2c_ewma``, slow-start
    coin flips) for reproducible runs; ``ewma_alpha`` in (0, 1] is the weight of the newest latency sample.
    """
    try:
        cls = _impl.SELECTORS[algorithm]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
        ) from None
    if n_endpoints < 1:
        raise ValueError("n_endpoints must be >= 1")
    if weights is None:
        weights = [1.0] * n_endpoints
    if len(weights) != n_endpoints:
        raise ValueError(f"weights has {len(weights)} entries, expected {n_endpoints}")
    clean = [float(w) for w in weights]
    if not all(0.0 <= w < float("inf") for w in clean):
        raise ValueError("weights must be finite and >= 0 (0 drains an endpoint)")
    if not slow_start >= 0.0:
        raise ValueError("slow_start must be >= 0 seconds")
    if not 0.0 < ewma_alpha <= 1.0:
        raise ValueError("ewma_alpha must be in (0, 1]")
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    selector: Selector = cls(clean, float(slow_start), seed, clock, float(ewma_alpha))
    return selector


def implementation() -> str:
    """``"compiled"`` or ``"pure-python"``: which implementation ``create_selector`` uses."""
    return "pure-python" if _impl.__name__.endswith("_py") else "compiled"
