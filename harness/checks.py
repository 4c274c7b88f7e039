"""Self-checks: relations every record must satisfy, computed from the model itself, not from the tracker.

A failed check does not drop the record: it is kept, marked, and shown in the summary, so that a wrong
number is visible next to the evidence that it is wrong.
"""

from __future__ import annotations

from typing import Any

import torch

ADAMW_METHODS = ("full_adamw", "lora", "qlora")


def _check(name: str, passed: bool, expected: Any, measured: Any, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "expected": expected, "measured": measured, "detail": detail}


def trainable_bytes(model: torch.nn.Module) -> tuple[int, int, int]:
    """(trainable elements, their bytes in their own dtype, number of trainable tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return (sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params), len(params))


def eight_bit_expected_elements(model: torch.nn.Module, min_8bit_size: int) -> int:
    """uint8 state elements AdamW8bit must hold: two per element of each tensor at or above min_8bit_size."""
    return 2 * sum(p.numel() for p in model.parameters() if p.requires_grad and p.numel() >= min_8bit_size)


def run_checks(cfg: Any, model: torch.nn.Module, metrics: dict, state_dtypes: dict[str, int]) -> list[dict]:
    checks = []
    memory = metrics.get("memory")
    n_trainable, bytes_trainable, n_tensors = trainable_bytes(model)
    if memory:
        checks.append(_check(
            "grads_bytes_equal_trainable_bytes", memory["grads_bytes"] == bytes_trainable, bytes_trainable,
            memory["grads_bytes"], "gradient bytes = trainable parameters x gradient element size"))
        checks.append(_check(
            "activations_positive", memory["activations_bytes"] > 0, "> 0", memory["activations_bytes"],
            "a training forward holds tensors for backward"))
        checks.append(_check(
            "optimizer_bytes_tracker_equals_direct", memory["optimizer_bytes"] == memory["optimizer_bytes_direct"],
            memory["optimizer_bytes_direct"], memory["optimizer_bytes"],
            "MemTracker's optimizer state = a direct walk of optimizer.state"))
        if cfg.method.name in ADAMW_METHODS:
            # exp_avg and exp_avg_sq in the parameter's dtype, plus one float32 `step` scalar per tensor.
            expected = 2 * bytes_trainable + 4 * n_tensors
            checks.append(_check("adamw_state_bytes", memory["optimizer_bytes"] == expected, expected,
                                 memory["optimizer_bytes"], "AdamW state = 2 x trainable bytes + 4 B step per tensor"))
    if cfg.method.name == "adamw8bit":
        expected = eight_bit_expected_elements(model, cfg.method.min_8bit_size)
        measured = state_dtypes.get("uint8", 0)
        checks.append(_check("adamw8bit_uint8_state_elements", measured == expected, expected, measured,
                             f"two uint8 states per element of tensors with >= {cfg.method.min_8bit_size} elements"))
    time = metrics["time"]
    thr = metrics["throughput"]
    product = thr["step_samples_per_s"] * time["step"]["median_s"]
    checks.append(_check("throughput_times_step_equals_batch", abs(product - cfg.workload.batch_size) < 1e-6,
                         cfg.workload.batch_size, product, "step_samples_per_s x median step time = batch size"))
    share = metrics["timing"]["timed_share_of_wall"]
    checks.append(_check("timed_loop_accounts_for_wall", 0.5 <= share <= 1.0 + 1e-6, "[0.5, 1.0]", share,
                         "the timed repetitions fill the wall time of the loop (the rest is untimed grad resets)"))
    return checks
