"""Self-checks: relations every record must satisfy, computed from the model itself, not from the tracker.

A failed check does not drop the record: it is kept, marked, and shown in the summary, so that a wrong
number is visible next to the evidence that it is wrong.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.config.groups import BenchConfig
from harness.config.rules import ADAMW_METHODS
from harness.measure.sharding import fsdp_grad_bytes, is_fsdp, local
from harness.predict.allocator import allocated_bytes


def _check(name: str, passed: bool, expected: Any, measured: Any, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "expected": expected, "measured": measured, "detail": detail}


def trainable_bytes(model: torch.nn.Module) -> int:
    """Bytes the allocator holds for one tensor shaped like each trainable parameter, in its dtype and on its
    device (rounded to the CUDA allocator's blocks there, as the tracker counts: harness/predict/allocator.py); under
    FSDP2, this rank's padded shards (harness/measure/sharding.py)."""
    if is_fsdp(model):
        return fsdp_grad_bytes(model)
    return sum(
        allocated_bytes(p.numel() * p.element_size(), p.device.type) for p in model.parameters() if p.requires_grad
    )


def adamw_expected_bytes(optimizer: torch.optim.Optimizer) -> int:
    """torch AdamW's state as the allocator holds it: exp_avg and exp_avg_sq like each parameter, and a 4-byte
    float32 `step` per parameter, on the parameter's device with the fused kernel, on the CPU without it."""
    total = 0
    for group in optimizer.param_groups:
        for p in map(local, group["params"]):  # a rank's own shard under FSDP2
            step_device = p.device.type if group.get("fused") or group.get("capturable") else "cpu"
            total += 2 * allocated_bytes(p.numel() * p.element_size(), p.device.type)
            total += allocated_bytes(4, step_device)
    return total


def eight_bit_expected_elements(model: torch.nn.Module, min_8bit_size: int) -> int:
    """uint8 state elements AdamW8bit must hold: two per element of each tensor at or above min_8bit_size."""
    return 2 * sum(p.numel() for p in model.parameters() if p.requires_grad and p.numel() >= min_8bit_size)


def _memory_checks(cfg: BenchConfig, workload, memory: dict) -> list[dict]:
    """Relations between the memory categories the tracker counted and what the model and optimizer hold."""
    bytes_trainable = trainable_bytes(workload.model)
    checks = [
        _check(
            "grads_bytes_equal_trainable_bytes",
            memory["grads_bytes"] == bytes_trainable,
            bytes_trainable,
            memory["grads_bytes"],
            "gradient bytes = trainable parameters x gradient element size",
        ),
        _check(
            "activations_positive",
            memory["activations_bytes"] > 0,
            "> 0",
            memory["activations_bytes"],
            "a training forward holds tensors for backward",
        ),
        _check(
            "optimizer_bytes_tracker_equals_direct",
            memory["optimizer_bytes"] == memory["optimizer_bytes_direct"],
            memory["optimizer_bytes_direct"],
            memory["optimizer_bytes"],
            "MemTracker's optimizer state = a direct walk of optimizer.state",
        ),
    ]
    if cfg.method.name in ADAMW_METHODS:
        expected = adamw_expected_bytes(workload.optimizer)
        checks.append(
            _check(
                "adamw_state_bytes",
                memory["optimizer_bytes"] == expected,
                expected,
                memory["optimizer_bytes"],
                "AdamW state = 2 x trainable bytes + a 4-byte step per tensor (as allocated)",
            )
        )
    return checks


def _timing_checks(cfg: BenchConfig, metrics: dict) -> list[dict]:
    product = metrics["throughput"]["step_samples_per_s"] * metrics["time"]["step"]["median_s"]
    share = metrics["timing"]["timed_share_of_wall"]
    return [
        _check(
            "throughput_times_step_equals_batch",
            abs(product - cfg.workload.batch_size) < 1e-6,
            cfg.workload.batch_size,
            product,
            "step_samples_per_s x median step time = batch size",
        ),
        _check(
            "timed_loop_accounts_for_wall",
            0.5 <= share <= 1.0 + 1e-6,
            "[0.5, 1.0]",
            share,
            "the timed repetitions fill the wall time of the loop (the rest is untimed grad resets)",
        ),
    ]


def run_checks(cfg: BenchConfig, workload, metrics: dict, state_dtypes: dict[str, int]) -> list[dict]:
    """Every relation that must hold in a measured case, in the order the record lists them."""
    checks = _memory_checks(cfg, workload, metrics["memory"]) if metrics.get("memory") else []
    if cfg.method.name == "adamw8bit":
        expected = eight_bit_expected_elements(workload.model, cfg.method.min_8bit_size)
        measured = state_dtypes.get("uint8", 0)
        checks.append(
            _check(
                "adamw8bit_uint8_state_elements",
                measured == expected,
                expected,
                measured,
                f"two uint8 states per element of tensors with >= {cfg.method.min_8bit_size} elements",
            )
        )
    return checks + _timing_checks(cfg, metrics)
