"""Timing shared by the peer scripts (each runs in its peer's own venv, next to this file)."""

from __future__ import annotations

import argparse
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
    return timing_record(case, first, times), out


def timing_record(case: str, first: float, times: list[float]) -> dict:
    """The JSON record of one case (``model_speed.py``'s and the peers'): seconds, and this
    process's peak resident memory in MB."""
    return {
        "case": case,
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def peer_arguments(extra=None) -> tuple[argparse.Namespace, str, int, int]:
    """The peer scripts' command line: ``--case``, ``--precision``, ``--repeat`` (plus what
    ``extra(parser)`` adds). Returns the arguments, the case's kind (``keras``, ``train``), its
    image size and its batch (``_b<B>``, else 1)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True, help="keras_<S> (inference) or train_<S>_b<B>")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeat", type=int, default=5)
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    parts = args.case.split("_")
    return args, parts[0], int(parts[1]), int(parts[2][1:]) if len(parts) > 2 else 1
