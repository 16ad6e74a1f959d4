"""Timing shared by the peer scripts (each runs in its peer's own venv, next to this file)."""

from __future__ import annotations

import resource
import statistics
import time


def measure(case: str, start: float, run, repeat: int) -> tuple[dict, object]:
    """Call ``run`` once (the first call, timed from ``start``), once more, then ``repeat`` times.

    Returns the JSON record of ``model_speed.py`` (seconds, MB) and the first call's output.
    """
    out = run()
    first = time.perf_counter() - start
    run()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    record = {
        "case": case,
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    return record, out
