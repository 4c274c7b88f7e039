"""Timing: CUDA events or perf_counter per repetition, phases interleaved, medians and paired ratios.

Interleaving (fwd_train, fwd_bwd, step, fwd_infer, fwd_train, ...) makes a machine's drift hit every phase
alike, so the ratio of two phases in the same repetition cancels most of it: the compute ratio is the median
of those paired ratios, not a ratio of two medians taken at different times.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch


class CpuTimer:
    """perf_counter around work that has finished: CPU ops run synchronously."""

    def time(self, fn: Callable[[], None]) -> Callable[[], float]:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        return lambda: elapsed


class CudaTimer:
    """CUDA events around the repetition; the value is read only after a synchronize."""

    def time(self, fn: Callable[[], None]) -> Callable[[], float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()

        def read() -> float:
            end.synchronize()  # the kernels queued between the events have finished
            return start.elapsed_time(end) / 1000.0

        return read


def timer_for(device: torch.device):
    return CudaTimer() if device.type == "cuda" else CpuTimer()


def interleaved(
    phases: dict[str, Callable[[], None]],
    repeats: int,
    timer,
    after: dict[str, Callable[[], None]] | None = None,
    sync: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[float]], float]:
    """Run each phase once per repetition, in order, `repeats` times.

    `after[phase]` runs untimed after that phase (gradient reset). Returns per-phase seconds and the wall
    time of the whole loop (for the cross-check that the timed parts account for it).
    """
    after = after or {}
    pending: dict[str, list[Callable[[], float]]] = {name: [] for name in phases}
    sync()  # nothing queued from before the loop may land inside it
    wall_start = time.perf_counter()
    for _ in range(repeats):
        for name, fn in phases.items():
            pending[name].append(timer.time(fn))
            if name in after:
                after[name]()
    sync()  # all timed work has finished before the wall clock stops
    wall = time.perf_counter() - wall_start
    return {name: [read() for read in reads] for name, reads in pending.items()}, wall


def summarize(samples: Sequence[float], noisy_cv: float) -> dict:
    arr = np.asarray(samples, dtype=float)
    mean = float(arr.mean())
    cv = float(arr.std(ddof=1) / mean) if len(arr) > 1 and mean > 0 else float("nan")
    return {
        "median_s": float(np.median(arr)),
        "p10_s": float(np.percentile(arr, 10)),
        "p90_s": float(np.percentile(arr, 90)),
        "mean_s": mean,
        "n": int(len(arr)),
        "cv": cv,
        "noisy": bool(not math.isfinite(cv) or cv > noisy_cv),
    }


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval for the median from order statistics (binomial, p = 1/2).

    Returns (lo, hi, coverage). With few samples the narrowest symmetric interval may cover less than
    `level`; the coverage actually achieved is returned so the record can say so.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0.0
    best = (xs[0], xs[-1], 1.0 - 2.0 * 0.5**n)
    # Widen from the middle outwards: the first symmetric pair of order statistics reaching `level` wins.
    for k in range(n // 2, -1, -1):
        lo_idx, hi_idx = k, n - 1 - k
        if lo_idx > hi_idx:
            continue
        coverage = sum(math.comb(n, i) for i in range(lo_idx + 1, hi_idx + 1)) / 2.0**n
        if coverage >= level:
            return xs[lo_idx], xs[hi_idx], coverage
    return best


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    ratios = [a / b for a, b in zip(numerator, denominator) if b > 0]
    lo, hi, coverage = median_ci(ratios)
    return {"median": float(np.median(ratios)), "ci95": [lo, hi], "ci_coverage": coverage, "n": len(ratios)}
