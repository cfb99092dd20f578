"""The one timing loop the benches share: the median of ``repeat`` calls, after a warm-up call
(so that a first call's imports and caches are not what is measured)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int, *, warm: bool = True) -> float:
    if warm:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
