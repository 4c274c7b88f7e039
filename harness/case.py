"""One case, start to finish, inside its own process: build, warm up, time, count memory and FLOPs, check.

Order matters: the timed loop runs before the tracker and the FLOP counter, which intercept every op and
would slow it; memory is read after warm-up, when optimizer state exists.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import torch

from harness import checks as checks_mod
from harness import flops as flops_mod
from harness import memory as memory_mod
from harness import provenance, timing
from harness.compose import compose_case, to_container
from harness.methods import build_trainable
from harness.record import build_record
from harness.workload import PHASES, Workload


def resolve_device(cfg: Any) -> torch.device:
    name = cfg.device.name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", cfg.device.index)
    return torch.device("cpu")


def parameter_counts(model: torch.nn.Module) -> dict:
    """Logical element counts: a Params4bit stores two 4-bit weights per byte; count the weights it holds."""
    total = trainable = quantized = 0
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        n = int(torch.Size(qs.shape).numel()) if qs is not None else p.numel()
        total += n
        if p.requires_grad:
            trainable += n
        if qs is not None:
            quantized += n
    return {"total": total, "trainable": trainable, "quantized_4bit": quantized}


def _timing_metrics(cfg: Any, workload: Workload, times: dict, wall: float) -> dict:
    noisy_cv = cfg.measure.noisy_cv
    time_stats = {phase: timing.summarize(samples, noisy_cv) for phase, samples in times.items()}
    step_s = time_stats["step"]["median_s"]
    infer_s = time_stats["fwd_infer"]["median_s"]
    ratio = timing.paired_ratio(times["fwd_bwd"], times["fwd_train"])
    step_infer = timing.paired_ratio(times["step"], times["fwd_infer"])
    bwd = timing.paired_ratio([b - f for b, f in zip(times["fwd_bwd"], times["fwd_train"])], times["fwd_train"])
    timed_total = sum(sum(samples) for samples in times.values())
    return {
        "time": time_stats,
        "compute_ratio": ratio["median"],
        "compute_ratio_ci95": ratio["ci95"],
        "compute_ratio_ci_coverage": ratio["ci_coverage"],
        "backward_to_forward_ratio": bwd["median"],
        "step_to_infer_ratio": step_infer["median"],
        "step_to_infer_ratio_ci95": step_infer["ci95"],
        "throughput": {
            "step_samples_per_s": workload.samples / step_s,
            "step_tokens_per_s": workload.tokens / step_s,
            "infer_samples_per_s": workload.samples / infer_s,
            "infer_tokens_per_s": workload.tokens / infer_s,
            # Cross-check from the sum of all timed steps (mean-based): far from the median-based figure
            # only when the distribution is skewed, which the cv flags too.
            "step_samples_per_s_from_total": workload.samples * len(times["step"]) / sum(times["step"]),
        },
        "timing": {
            "timer": "cuda_event" if workload.device.type == "cuda" else "perf_counter",
            "loop_wall_s": wall,
            "timed_total_s": timed_total,
            "timed_share_of_wall": timed_total / wall if wall > 0 else float("nan"),
            "order": list(PHASES),
            "repeats": cfg.measure.repeats,
            "warmup": cfg.measure.warmup,
            "warmup_steps": cfg.measure.warmup_steps,
        },
    }


def _warm_up(cfg: Any, workload: Workload, device: torch.device, stage: dict) -> dict | None:
    """Warm-up; under an emulated CPU budget, the steps and one pass of every phase run inside the budget's
    accounting (every peak is first reached there), the remaining untimed repeats outside it."""
    budget = cfg.device.memory_budget_gib
    if budget is None or device.type != "cpu":
        stage["phase"] = "warm-up"
        workload.warm_up(cfg.measure.warmup_steps, cfg.measure.warmup)
        return None
    from harness import budget as budget_mod

    with budget_mod.cpu_budget(workload, int(budget * budget_mod.GIB)) as mode:
        for _ in range(cfg.measure.warmup_steps):
            mode.phase = stage["phase"] = "step"
            workload.step()
        for phase in PHASES:
            mode.phase = stage["phase"] = phase
            workload.run(phase)
    workload.warm_up(0, max(0, cfg.measure.warmup - 1))
    return {"budget_bytes": mode.budget_bytes, "emulated": True,
            "method": "CPU: live tensor bytes counted by a TorchDispatchMode during warm-up (harness/budget.py)",
            "peak_live_bytes": mode.peak_bytes}


def measure_case(cfg: Any, device: torch.device, stage: dict | None = None) -> tuple[dict, dict, list]:
    stage = stage if stage is not None else {}
    budget_info = None
    if cfg.device.memory_budget_gib is not None and device.type == "cuda":
        from harness import budget as budget_mod

        budget_info = {"budget_bytes": int(cfg.device.memory_budget_gib * budget_mod.GIB), "emulated": True,
                       "method": "CUDA: torch.cuda.set_per_process_memory_fraction, minus the context"}
        budget_info.update(budget_mod.cuda_budget(device, budget_info["budget_bytes"]))
    stage["phase"] = "load"
    trainable = build_trainable(cfg, device)
    workload = Workload(cfg, trainable, device)
    budget_info = _warm_up(cfg, workload, device, stage) or budget_info
    stage["phase"] = "timing"

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times, wall = timing.interleaved({p: getattr(workload, p) for p in PHASES}, cfg.measure.repeats,
                                     timing.timer_for(device), after={"fwd_bwd": workload.reset_grads}, sync=sync)
    metrics = _timing_metrics(cfg, workload, times, wall)
    metrics["params"] = parameter_counts(workload.model)
    if budget_info:
        metrics["memory_budget"] = budget_info
    stage["phase"] = "memory pass"

    if cfg.measure.memory:
        nvml = None
        if device.type == "cuda":
            from harness.nvml import Nvml

            nvml = Nvml(device.index or 0)
            metrics["nvml"] = {"available": nvml.available, "uuid": nvml.uuid, "reason": nvml.reason or None}
        metrics["memory"] = memory_mod.measure_memory(workload, nvml)
        others = {p["pid"] for phase in metrics["memory"]["phase"].values() for p in phase.get("other_processes", [])}
        if others:
            # NVML's device figure includes them; this process's and torch's figures do not.
            message = f"{len(others)} other process(es) held memory on this GPU during the case (pids {sorted(others)})"
            print(f"warning: {message}", file=sys.stderr)
            metrics.setdefault("warnings", []).append(message)
    state_dtypes = memory_mod.optimizer_state_dtypes(workload.optimizer)
    metrics["optimizer_state_elements_by_dtype"] = state_dtypes

    if cfg.measure.flops:
        stage["phase"] = "flop count"
        flops = flops_mod.measure_flops(workload)
        metrics["flops"] = flops
        metrics.update(flops_mod.flop_ratios(flops))
        medians = {p: metrics["time"][p]["median_s"] for p in PHASES}
        metrics["flop_rate"] = flops_mod.achieved(flops, medians, cfg, device)

    if cfg.measure.gradients:
        from harness.gradients import measure_gradients

        metrics["gradients"] = measure_gradients(workload, cfg.method.name)

    checks = checks_mod.run_checks(cfg, workload.model, metrics, state_dtypes)
    return metrics, trainable.resolved, checks


def run_case(overrides: list[str]) -> dict:
    """Compose, measure and return the record of one case; failures become error/oom records."""
    cfg = compose_case(overrides)
    config = to_container(cfg)
    device = resolve_device(cfg)
    torch.manual_seed(cfg.workload.seed)
    prov = provenance.collect(device)
    stage = {"phase": "load"}
    try:
        metrics, resolved, checks = measure_case(cfg, device, stage)
    except torch.OutOfMemoryError as exc:
        # Not fitting is a result: the phase it failed in and the memory figures up to that point.
        figures = dict(getattr(exc, "figures", {}))
        if device.type == "cuda":
            figures.setdefault("torch_max_allocated_bytes", torch.cuda.max_memory_allocated(device))
            figures.setdefault("torch_max_reserved_bytes", torch.cuda.max_memory_reserved(device))
        phase = figures.pop("phase", stage["phase"])
        budget = cfg.device.memory_budget_gib
        return build_record(config=config, overrides=overrides, provenance=prov, status="oom",
                            metrics={"oom": {**figures, "budget_emulated": budget is not None}},
                            error={"type": type(exc).__name__, "message": str(exc)[:2000], "phase": phase})
    except Exception as exc:  # any failure is a result to record, not a dead sweep
        return build_record(config=config, overrides=overrides, provenance=prov, status="error",
                            error={"type": type(exc).__name__, "message": str(exc)[:2000],
                                   "traceback": traceback.format_exc()[-8000:]})
    return build_record(config=config, overrides=overrides, provenance=prov, status="ok", metrics=metrics,
                        resolved=resolved, checks=checks)
