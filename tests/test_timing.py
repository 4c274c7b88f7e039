"""Timers read back known sleeps; the statistics match hand computation."""

import time

import pytest

from harness.measure import timing


@pytest.mark.parametrize("seconds", [0.02, 0.05])
def test_cpu_timer_reads_known_sleep_within_10_percent(seconds):
    readings = [timing.CpuTimer().time(lambda: time.sleep(seconds))() for _ in range(5)]
    assert abs(sorted(readings)[2] / seconds - 1) < 0.10


def test_interleaved_runs_phases_in_order_and_paired_ratio_of_sleeps():
    order = []
    phases = {"a": lambda: (order.append("a"), time.sleep(0.01)), "b": lambda: (order.append("b"), time.sleep(0.03))}
    times, wall = timing.interleaved(phases, 5, timing.CpuTimer(), after={"a": lambda: order.append("reset")})
    assert order == ["a", "reset", "b"] * 5
    assert len(times["a"]) == len(times["b"]) == 5
    assert sum(times["a"]) + sum(times["b"]) <= wall
    ratio = timing.paired_ratio(times["b"], times["a"])
    assert abs(ratio["median"] / 3.0 - 1) < 0.15
    assert ratio["ci95"][0] <= ratio["median"] <= ratio["ci95"][1]


def test_summary_statistics_by_hand():
    s = timing.summarize([1.0, 2.0, 3.0, 4.0, 10.0], noisy_cv=0.1)
    assert s["median_s"] == 3.0 and s["n"] == 5 and s["mean_s"] == 4.0
    assert s["p10_s"] == pytest.approx(1.4) and s["p90_s"] == pytest.approx(7.6)
    assert s["cv"] == pytest.approx(3.5355339 / 4.0) and s["noisy"]
    assert not timing.summarize([1.0, 1.01, 0.99], noisy_cv=0.1)["noisy"]


def test_median_ci_order_statistics():
    # n = 10: the 2nd and 9th order statistics cover the median with probability 1 - 2 * 11/1024
    lo, hi, coverage = timing.median_ci(list(range(10)))
    assert (lo, hi) == (1, 8) and coverage == pytest.approx(1 - 22 / 1024)
    lo, hi, coverage = timing.median_ci([5, 1, 4, 2, 3])  # n = 5 cannot reach 95%: full range, 93.75%
    assert (lo, hi, coverage) == (1, 5, 0.9375)


def test_timing_metrics_by_hand():
    from types import SimpleNamespace

    import torch

    from harness.config.compose import compose_case
    from harness.measure.case import _timing_metrics

    cfg = compose_case(["device=cpu", "workload.batch_size=4", "workload.seq_len=8", "measure.repeats=3"])
    workload = SimpleNamespace(samples=4, tokens=32, device=torch.device("cpu"))
    times = {
        "fwd_train": [1.0, 2.0, 1.0],
        "fwd_bwd": [3.0, 5.0, 2.5],
        "step": [4.0, 8.0, 4.0],
        "fwd_infer": [0.5, 1.0, 0.5],
    }
    m = _timing_metrics(cfg, workload, times, wall=40.0)
    assert m["compute_ratio"] == 2.5  # paired ratios 3, 2.5, 2.5
    assert m["backward_to_forward_ratio"] == 1.5  # (fwd_bwd - fwd_train) / fwd_train: 2, 1.5, 1.5
    assert m["step_to_infer_ratio"] == 8.0
    assert m["throughput"]["step_samples_per_s"] == 4 / 4.0 and m["throughput"]["step_tokens_per_s"] == 32 / 4.0
    assert m["throughput"]["infer_tokens_per_s"] == 32 / 0.5
    assert m["throughput"]["step_samples_per_s_from_total"] == 4 * 3 / 16.0
    assert m["timing"]["timed_total_s"] == 32.5 and m["timing"]["timed_share_of_wall"] == 32.5 / 40.0
