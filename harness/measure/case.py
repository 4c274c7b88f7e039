"""One case, start to finish, inside its own process: build, warm up, time, count memory and FLOPs, check.

Order matters: the timed loop runs before the tracker and the FLOP counter, which intercept every op and
would slow it; memory is read after warm-up, when optimizer state exists.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from harness.config.case import Case
from harness.config.groups import BenchConfig
from harness.config.parallel import is_multi_rank
from harness.config.rules import PHASES
from harness.measure import attention, faults, provenance, timing
from harness.measure import budget as budget_mod
from harness.measure import checks as checks_mod
from harness.measure import flops as flops_mod
from harness.measure import memory as memory_mod
from harness.measure.methods import build_trainable
from harness.measure.workload import Workload
from harness.records.outcome import OK, OOM, Measurement, failure
from harness.units import GIB


def resolve_device(cfg: BenchConfig) -> torch.device:
    """The device a case runs on, by the one rule (DeviceConfig.type_on), seen from torch."""
    if cfg.device.type_on(torch.cuda.is_available()) == "cuda":
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


def _timing_metrics(cfg: BenchConfig, workload: Workload, times: dict, wall: float) -> dict:
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


class Stage:
    """Where the case is, said once: the budget puts it into its figures, an oom record into `error.phase`, and
    `report` sends it to the parent process, which can then say where a case that hung or was killed stopped."""

    def __init__(self, report: Callable[[str], None] | None = None):
        self.name = "start"
        self._report = report

    def __call__(self, name: str) -> None:
        self.name = name
        if self._report is not None:
            self._report(name)


def _warm_up(cfg: BenchConfig, workload: Workload, stage: Stage, cpu_budget) -> None:
    """Warm-up; under an emulated CPU budget, the steps and one pass of every phase run inside the budget's
    accounting (every peak is first reached there), the remaining untimed repeats outside it."""
    if cpu_budget is None:
        stage("warm-up")
        workload.warm_up(cfg.measure.warmup_steps, cfg.measure.warmup)
        return
    with budget_mod.counting(cpu_budget, workload):
        for _ in range(cfg.measure.warmup_steps):
            stage("step")
            workload.step()
        for phase in PHASES:
            stage(phase)
            workload.run(phase)
    stage("warm-up")
    workload.warm_up(0, max(0, cfg.measure.warmup - 1))


def _diagnostic(metrics: dict, key: str, device: torch.device, run: Callable[[], Any]) -> Any:
    """A pass after the measurement (FLOP count, gradient diagnostics): its failure, running out of memory
    included, leaves metrics[key] null with the reason, and the case's timing and memory stand."""
    try:
        return run()
    except Exception as exc:  # recorded beside the null, never hidden
        metrics[key] = None
        metrics[f"{key}_unavailable_reason"] = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None


def _other_process_warning(phases: dict) -> str | None:
    others = {p["pid"] for phase in phases.values() for p in (phase.get("other_processes") or [])}
    if not others:
        return None
    # NVML's device figure includes them; this process's and torch's figures do not.
    return f"{len(others)} other process(es) held memory on this GPU during the case (pids {sorted(others)})"


@dataclass
class Context:
    """What a case sets up before its model: NVML and the CUDA libraries on a GPU, or an emulated CPU budget."""

    nvml: Any = None
    cpu_budget: Any = None
    libraries: list = field(default_factory=list)


def _context(cfg: BenchConfig, device: torch.device, stage: Stage, metrics: dict) -> Context:
    budget_bytes = int(cfg.device.memory_budget_gib * GIB) if cfg.device.memory_budget_gib is not None else None
    if device.type != "cuda":
        return Context(cpu_budget=budget_mod.CpuBudget(budget_bytes, stage) if budget_bytes is not None else None)
    from harness.measure import cuda_context
    from harness.measure.nvml import Nvml

    stage("context")
    nvml = Nvml(device.index or 0)
    metrics["nvml"] = {"available": nvml.available, "uuid": nvml.uuid, "reason": nvml.reason or None}
    libraries = cuda_context.load_libraries(device, cfg)
    if budget_bytes is not None:
        metrics["memory_budget"] = budget_mod.cuda_budget(device, budget_bytes, cuda_context.measure(device, nvml))
    return Context(nvml=nvml, libraries=libraries)


def _time_phases(cfg: BenchConfig, workload: Workload, device: torch.device, metrics: dict) -> None:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times, wall = timing.interleaved(
        {p: getattr(workload, p) for p in PHASES},
        cfg.measure.repeats,
        timing.timer_for(device),
        after={"fwd_bwd": workload.reset_grads},
        sync=sync,
    )
    metrics.update(_timing_metrics(cfg, workload, times, wall))
    metrics["params"] = parameter_counts(workload.model)


def _memory_pass(workload: Workload, inference: Any, context: Context, metrics: dict) -> None:
    metrics["memory"] = memory_mod.measure_memory(workload, inference, context.nvml)
    if workload.device.type == "cuda":
        from harness.measure import cuda_context

        metrics["memory"]["cuda_context"] = {
            **cuda_context.measure(workload.device, context.nvml),
            "libraries_loaded": context.libraries,
        }
    warning = _other_process_warning(metrics["memory"]["phase"])
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
        metrics.setdefault("warnings", []).append(warning)


def _counted_passes(cfg: BenchConfig, workload: Workload, stage: Stage, metrics: dict) -> None:
    """The FLOP count and the gradient diagnostics: after the measurement, each failing on its own."""
    device = workload.device
    if cfg.measure.flops:
        stage("flop count")
        flops = _diagnostic(metrics, "flops", device, lambda: flops_mod.measure_flops(workload))
        if flops is not None:
            metrics["flops"] = flops
            metrics.update(flops_mod.flop_ratios(flops))
            medians = {p: metrics["time"][p]["median_s"] for p in PHASES}
            metrics["flop_rate"] = flops_mod.achieved(flops, medians, cfg, device)
    if cfg.measure.gradients:
        from harness.measure.gradients import measure_gradients

        stage("gradients")
        gradients = _diagnostic(metrics, "gradients", device, lambda: measure_gradients(workload, cfg.method.name))
        if gradients is not None:
            metrics["gradients"] = gradients


def measure_case(
    cfg: BenchConfig, device: torch.device, stage: Stage, wrap: Callable | None = None
) -> tuple[dict, dict, list]:
    """The figures of one case in this process; `wrap` makes the model a rank's DDP / FSDP2 form
    (harness/measure/ranks.py)."""
    metrics: dict = {}
    context = _context(cfg, device, stage, metrics)
    budget = context.cpu_budget
    with budget_mod.counting(budget):
        stage("load")
        trainable = build_trainable(cfg, device, wrap)
        stage("inputs")
        workload = Workload(cfg, trainable, device)
    with budget_mod.counting(budget, workload):
        stage("attention kernel")
        kernels = attention.kernels_used(workload)
        if kernels is not None:
            trainable.resolved["attention_kernel"] = kernels
        inference = None
        if cfg.measure.memory:
            stage("fwd_infer")
            inference = memory_mod.measure_inference_memory(workload, context.nvml)
    _warm_up(cfg, workload, stage, budget)
    stage("timing")
    _time_phases(cfg, workload, device, metrics)
    with budget_mod.counting(budget, workload):
        if cfg.measure.memory:
            stage("memory pass")
            _memory_pass(workload, inference, context, metrics)
        state_dtypes = memory_mod.optimizer_state_dtypes(workload.optimizer)
        metrics["optimizer_state_elements_by_dtype"] = state_dtypes
        _counted_passes(cfg, workload, stage, metrics)
    if budget is not None:
        metrics["memory_budget"] = budget.info()
    checks = checks_mod.run_checks(cfg, workload, metrics, state_dtypes)
    return metrics, trainable.resolved, checks


def _failed(exc: Exception, cfg: BenchConfig, device: torch.device, prov: dict, stage: Stage) -> Measurement:
    """An exception is a result to record, not a dead sweep: an oom (with the figures up to the phase it ran out
    of memory in), or an error with its traceback."""
    if not faults.is_out_of_memory(exc):
        return failure(prov, type(exc).__name__, str(exc)[:2000], stage.name, traceback=traceback.format_exc()[-8000:])
    figures = dict(getattr(exc, "figures", {}))
    if device.type == "cuda":
        figures.setdefault("torch_max_allocated_bytes", torch.cuda.max_memory_allocated(device))
        figures.setdefault("torch_max_reserved_bytes", torch.cuda.max_memory_reserved(device))
    oom_metrics = {"oom": {**figures, "budget_emulated": cfg.device.memory_budget_gib is not None}}
    error = {"type": type(exc).__name__, "message": str(exc)[:2000], "phase": stage.name}
    return Measurement(OOM, prov, metrics=oom_metrics, error=error)


def run_case(case: Case, report: Callable[[object], None] | None = None, started: float | None = None) -> Measurement:
    """Measure `case` in this process; failures become error/oom measurements. `report` is told each stage the
    case enters and, first, the provenance (the parent listens: a case that dies later is still placed).
    `started`: when the parent started this process (time.monotonic), from which a multi-rank case's time limit
    counts."""
    cfg = case.config
    device = resolve_device(cfg)
    if is_multi_rank(cfg):  # its ranks, started by torchrun, measure it; this process waits for their figures
        from harness.measure.launch import run_multi_rank

        return run_multi_rank(case, device, report, started=started)
    if device.type == "cuda":
        if torch.cuda._is_in_bad_fork():
            raise RuntimeError(
                "CUDA was initialised in the process this case was forked from; run with "
                "BENCH_START_METHOD=spawn (and report it: harness/run/preload.py must not do that)"
            )
        # CUDA events, streams and the allocator's figures are per device: every later call means this one
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.workload.seed)
    prov = provenance.collect(device)
    if report is not None:
        report(prov)
    stage = Stage(report)
    try:
        metrics, resolved, checks = measure_case(cfg, device, stage)
    except Exception as exc:  # any failure is a result to record, not a dead sweep
        return _failed(exc, cfg, device, prov, stage)
    finally:  # how busy the machine was as the case ended, beside the sample taken as it started
        prov["load"]["end"] = provenance.load_sample()
    return Measurement(OK, prov, metrics=metrics, resolved=resolved, checks=checks)
