"""FLOP counts with torch.utils.flop_counter.FlopCounterMode, achieved FLOP/s and MFU.

`flops.fwd_bwd` is what ran, recomputation included (about 4x forward with full recomputation);
`flops.fwd_bwd_model` is the same pass with checkpointing switched off: model FLOPs, the only ones MFU
may count (PaLM §4.1; MLPerf). For quantized weights (QLoRA) the counts are partial: bitsandbytes' 4-bit
kernels are invisible to the counter, so ratios, FLOP/s and MFU are left out.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.config.groups import BenchConfig
from harness.measure.timing import CudaTimer
from harness.measure.workload import Workload

# Dense (no sparsity) peak tensor throughput, TFLOP/s, from vendor datasheets. Keys are matched as
# substrings of torch.cuda.get_device_name(); the longest match wins (so "H100 PCIe" beats "H100").
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp16": 362.1, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3},
    "A10G": {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2},
    "RTX 4090": {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6},
    "RTX 3090": {"bf16": 71.0, "fp16": 71.0, "fp32": 35.6},
    "RTX A6000": {"bf16": 154.8, "fp16": 154.8, "fp32": 38.7},
}
COMPUTE_DTYPE = {"fp32": "fp32", "bf16": "bf16", "amp_bf16": "bf16", "amp_fp16": "fp16"}


def count_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def recomputation_off(workload: Workload):
    """Switch activation checkpointing off for the duration: the same pass without recomputed work."""
    model = workload.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(base, "checkpoint_segments"):
        saved = base.checkpoint_segments
        base.checkpoint_segments = None
        try:
            yield
        finally:
            base.checkpoint_segments = saved
    elif getattr(base, "is_gradient_checkpointing", False):
        base.gradient_checkpointing_disable()
        try:
            yield
        finally:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        yield


def measure_flops(workload: Workload) -> dict:
    losses = []
    fwd = count_flops(lambda: losses.append(workload.forward_loss()))
    workload.release_graph(losses.pop())
    fwd_bwd = count_flops(workload.fwd_bwd)
    workload.reset_grads()
    with recomputation_off(workload):
        fwd_bwd_model = count_flops(workload.fwd_bwd)
    workload.reset_grads()
    infer = count_flops(lambda: workload.run("fwd_infer", instrumented=True))
    counts = {
        "fwd_train": fwd,
        "fwd_bwd": fwd_bwd,
        "fwd_bwd_model": fwd_bwd_model,
        "fwd_infer": infer,
        "recomputed": fwd_bwd - fwd_bwd_model,
        "complete": True,
    }
    if workload.cfg.method.name == "qlora":
        # bitsandbytes' 4-bit matmuls are custom ops the counter does not see (on CPU the forward kernel is
        # invisible while the backward's dequantize + matmul is counted): the counts are partial, and a ratio
        # of partial counts is not a FLOP ratio.
        counts["complete"] = False
        counts["incomplete_reason"] = "bitsandbytes 4-bit matmuls are not counted by FlopCounterMode"
    return counts


def flop_ratios(flops: dict) -> dict:
    """fwd_bwd / fwd_train as executed and without recomputation; null when the counts are partial."""
    if not flops["complete"] or not flops["fwd_train"]:
        return {"flop_ratio": None, "model_flop_ratio": None}
    return {
        "flop_ratio": flops["fwd_bwd"] / flops["fwd_train"],
        "model_flop_ratio": flops["fwd_bwd_model"] / flops["fwd_train"],
    }


def peak_tflops(device_name: str, dtype: str) -> tuple[float | None, str | None]:
    matches = [key for key in PEAK_TFLOPS if key.lower() in device_name.lower()]
    if not matches:
        return None, None
    key = max(matches, key=len)
    return PEAK_TFLOPS[key].get(dtype), key


MATMUL_SIZE = 8192  # large enough to reach a card's sustained matmul rate


def measured_matmul_tflops(
    device: torch.device, dtype: torch.dtype, size: int = MATMUL_SIZE, repeats: int = 10
) -> float:
    """Achieved TFLOP/s of a large square matmul on this GPU: a peak the card demonstrably reaches."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)

    def matmuls() -> None:  # each product is dropped at once: one output matrix alive at a time
        for _ in range(repeats):
            a @ b

    seconds = CudaTimer().time(matmuls)()
    return 2 * size**3 * repeats / seconds / 1e12


def achieved(flops: dict, time_medians: dict, cfg: BenchConfig, device: torch.device) -> dict:
    """FLOP/s per phase from the median times, and MFU (model FLOPs only) on CUDA."""
    if not flops["complete"]:  # partial counts: no FLOP/s and no MFU (QLoRA)
        return {"unavailable_reason": flops["incomplete_reason"]}
    out: dict[str, Any] = {
        "fwd_train_flop_per_s": flops["fwd_train"] / time_medians["fwd_train"],
        "fwd_bwd_flop_per_s": flops["fwd_bwd"] / time_medians["fwd_bwd"],
        "fwd_bwd_model_flop_per_s": flops["fwd_bwd_model"] / time_medians["fwd_bwd"],
        "fwd_infer_flop_per_s": flops["fwd_infer"] / time_medians["fwd_infer"],
    }
    if device.type != "cuda":
        out["mfu_unavailable_reason"] = "MFU is reported on CUDA only"
        return out
    dtype_name = COMPUTE_DTYPE[cfg.precision.name]
    name = torch.cuda.get_device_name(device)
    peak, key = peak_tflops(name, dtype_name)
    if peak:
        out["mfu_datasheet"] = out["fwd_bwd_model_flop_per_s"] / (peak * 1e12)
        out["peak_tflops_datasheet"] = {"value": peak, "dtype": dtype_name, "matched": key}
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    started = time.perf_counter()
    try:
        torch.cuda.empty_cache()
        measured = measured_matmul_tflops(device, torch_dtype)
    except torch.OutOfMemoryError as exc:  # three 8192² matrices beside the case's state: no room is a reason
        torch.cuda.empty_cache()
        out["peak_tflops_measured_matmul"] = None
        out["mfu_measured_peak_unavailable_reason"] = f"the {MATMUL_SIZE}² peak matmul ran out of memory: {exc}"[:500]
        return out
    out["peak_tflops_measured_matmul"] = {
        "value": measured,
        "dtype": dtype_name,
        "size": MATMUL_SIZE,
        "seconds": time.perf_counter() - started,
    }
    out["mfu_measured_peak"] = out["fwd_bwd_model_flop_per_s"] / (measured * 1e12)
    return out
