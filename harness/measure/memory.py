"""Memory per phase, with peaks reset between phases, and the breakdown by category.

The breakdown uses PyTorch's own tracker (torch.distributed._tools.mem_tracker.MemTracker), which sees
every tensor an op creates and classifies it as parameter, buffer, gradient, optimizer state, activation
(created in forward, or recomputed under checkpointing) or temporary (created in backward). Two things it
cannot see are counted exactly here instead:
- NF4 quantization state (absmax, nested absmax, codebooks) lives on Params4bit.quant_state, not in any
  parameter or buffer: added to params_bytes by walking each quantized weight;
- optimizer state is cross-checked against a direct walk of optimizer.state (8-bit state included).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed._tools.fsdp2_mem_tracker import _FSDPRefType
from torch.distributed._tools.mem_tracker import _MemRefType

from harness.config.rules import TRAINING_PHASES
from harness.measure.sharding import is_fsdp, local
from harness.measure.trackers import CategoryPeakTracker, DevicePhase, FsdpCategoryPeakTracker, RssPeak, snapshot
from harness.measure.workload import Workload
from harness.predict.allocator import allocated_bytes
from harness.records.schema import PEAK_INFER_HOLDS


def _storage_key(t: torch.Tensor) -> tuple:
    st = local(t).untyped_storage()
    return (st.data_ptr(), st.device.type, st.device.index)


def unique_tensor_bytes(tensors) -> int:
    """Bytes the allocator holds for the distinct storages behind `tensors` (views and shared storages counted
    once; each rounded as its device's allocator rounds it, as MemTracker counts: harness/predict/allocator.py)."""
    seen: dict[tuple, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            seen[_storage_key(t)] = allocated_bytes(local(t).untyped_storage().nbytes(), t.device.type)
    return sum(seen.values())


def quant_state_tensors(qs: Any):
    for name in ("absmax", "code", "offset"):
        t = getattr(qs, name, None)
        if isinstance(t, torch.Tensor):
            yield t
    nested = getattr(qs, "state2", None)
    if nested is not None:
        yield from quant_state_tensors(nested)


def quantization_state_bytes(model: torch.nn.Module) -> int:
    """Exact bytes of bitsandbytes 4-bit quantization state, which no tracker attributes to the model."""
    tensors = []
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            tensors.extend(quant_state_tensors(qs))
    return unique_tensor_bytes(tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return unique_tensor_bytes(v for state in optimizer.state.values() for v in state.values())


def optimizer_paged_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of bitsandbytes' paged state (CUDA unified memory: PyTorch's allocator never sees it; NVML does)."""
    return unique_tensor_bytes(
        v for state in optimizer.state.values() for v in state.values() if getattr(v, "is_paged", False)
    )


def optimizer_state_dtypes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Element counts of optimizer state by dtype (e.g. uint8 for 8-bit AdamW), per state key kind."""
    counts: dict[str, int] = {}
    for state in optimizer.state.values():
        for key, v in state.items():
            if isinstance(v, torch.Tensor) and key in ("exp_avg", "exp_avg_sq", "state1", "state2"):
                dtype = str(v.dtype).removeprefix("torch.")
                counts[dtype] = counts.get(dtype, 0) + v.numel()
    return counts


@dataclass
class TrackedPhase:
    """What one tracked run of a phase leaves: the figures for the record, and the tracker's readings by
    category (the tracker itself is dropped: it keeps references that would hold one phase's tensors alive
    into the next)."""

    figures: dict
    at_entry: dict[str, int]
    at_peak: dict[str, int]
    category_peaks: dict[str, int]
    recompute_act_peak: int
    end_of_forward: dict[str, int]
    gathered_peak: int  # FSDP2: the most parameter bytes gathered at once (unsharded + in all-gather buffers)


# The tracker's category for each quantity of the record: FSDPMemTracker splits parameters and gradients into
# sharded (what the rank keeps) and unsharded (gathered for one unit's compute), and names its own state key.
CATEGORIES = {
    False: {
        "params": _MemRefType.PARAM,
        "buffers": _MemRefType.BUFFER,
        "grads": _MemRefType.GRAD,
        "optimizer": _MemRefType.OPT,
        "activations": _MemRefType.ACT,
    },
    True: {
        "params": _FSDPRefType.SHARDED_PARAM,
        "buffers": _FSDPRefType.BUFFER,
        "grads": _FSDPRefType.SHARDED_GRAD,
        "optimizer": _FSDPRefType.OPT,
        "activations": _FSDPRefType.ACT,
    },
}
# FSDP2's transient memory, each category's peak over the step: what a rank holds beyond its shards
FSDP_TRANSIENT = {
    "unsharded_params_peak_bytes": _FSDPRefType.UNSHARDED_PARAM,
    "unsharded_grads_peak_bytes": _FSDPRefType.UNSHARDED_GRAD,
    "all_gather_peak_bytes": _FSDPRefType.ALL_GATHER,
    "reduce_scatter_peak_bytes": _FSDPRefType.REDUCE_SCATTER,
}


def _tracker(workload: Workload, tracked: tuple):
    """The tracker for `tracked` (the model, and the optimizer when training): FSDPMemTracker for an FSDP2 model."""
    if is_fsdp(workload.model):
        optimizer = workload.optimizer if workload.optimizer in tracked else None
        return FsdpCategoryPeakTracker(workload.model, optimizer)
    tracker = CategoryPeakTracker()
    tracker.track_external(*tracked)
    return tracker


def _tracked_phase(
    workload: Workload, phase: str, tracked: tuple, nvml, quant_bytes: int, rss: "RssPeak"
) -> TrackedPhase:
    """One run of `phase` under the tracker and the device counters."""
    workload.reset_grads()
    gc.collect()
    end_of_forward: dict[str, int] = {}
    unreleased = None
    with DevicePhase(workload.device, nvml) as device_phase:
        tracker = _tracker(workload, tracked)
        rss.start()
        with tracker:
            # read inside: FSDPMemTracker registers the sharded parameters and optimizer state on entering
            at_entry = snapshot(tracker, "current")
            if phase == "step":
                # The same work as Workload.step, opened up to read what the forward leaves for backward.
                loss = workload.forward_loss()
                end_of_forward = snapshot(tracker, "current")
                workload.backward(loss)
                del loss
                workload.optimizer_step()
            elif phase == "fwd_train":
                unreleased = workload.forward_only_loss()
            else:
                workload.run(phase, instrumented=True)
        at_peak = snapshot(tracker, "peak")
        figures = {
            "tracked_peak_bytes": at_peak.get("Total", 0) + quant_bytes,
            "rss_peak_bytes": rss.stop(),
            **device_phase.figures(),
        }
    if unreleased is not None:
        workload.release_graph(unreleased)  # after the figures were read
    result = TrackedPhase(
        figures,
        at_entry,
        at_peak,
        dict(tracker.category_peaks),
        tracker.recompute_act_peak,
        end_of_forward,
        tracker.gathered_peak,
    )
    del tracker
    gc.collect()
    return result


def measure_inference_memory(workload: Workload, nvml=None) -> dict:
    """fwd_infer's figures for the model alone, as serving holds it: measured before the first optimizer step
    (no optimizer state exists yet, no gradient), after one untimed inference forward that loads the kernels
    and library handles it needs. Only the model is tracked; the synthetic batch is not counted."""
    if workload.optimizer.state:
        raise RuntimeError("the inference memory pass must run before the first optimizer step")
    workload.run("fwd_infer")
    return _tracked_phase(
        workload, "fwd_infer", (workload.model,), nvml, quantization_state_bytes(workload.model), RssPeak()
    ).figures


def measure_memory(workload: Workload, inference: dict, nvml=None) -> dict:
    """Run each training phase once under the tracker with every peak counter reset first; with the
    inference figures measured earlier (measure_inference_memory), return metrics.memory."""
    device = workload.device
    model, optimizer = workload.model, workload.optimizer
    quant_bytes = quantization_state_bytes(model)
    rss = RssPeak()
    phases: dict[str, dict] = {"fwd_infer": inference}
    for phase in TRAINING_PHASES:
        tracked = _tracked_phase(workload, phase, (model, optimizer), nvml, quant_bytes, rss)
        phases[phase] = tracked.figures
    # the step's readings (the last phase): optimizer state and parameters as it starts, its peaks
    at_entry, at_peak, peaks = tracked.at_entry, tracked.at_peak, tracked.category_peaks
    end_of_forward, recompute_act_peak = tracked.end_of_forward, tracked.recompute_act_peak
    fsdp = is_fsdp(model)
    cat = {name: ref.value for name, ref in CATEGORIES[fsdp].items()}
    transient = {name: ref.value for name, ref in FSDP_TRANSIENT.items()} if fsdp else {}
    optimizer_bytes = at_entry.get(cat["optimizer"], 0)
    persistent = sum(at_peak.get(cat[k], 0) for k in ("params", "buffers", "grads", "activations"))
    persistent += sum(at_peak.get(v, 0) for v in transient.values())
    memory = {
        "params_bytes": at_entry.get(cat["params"], 0) + quant_bytes,
        "buffers_bytes": at_entry.get(cat["buffers"], 0),
        "quantization_state_bytes": quant_bytes,
        "grads_bytes": peaks.get(cat["grads"], 0),
        "optimizer_bytes": optimizer_bytes,
        "optimizer_bytes_direct": optimizer_state_bytes(optimizer),
        # What the forward holds for backward (read at its end, so forward temporaries already freed are
        # out), or more where recomputation under checkpointing brings more back at once.
        "activations_bytes": max(end_of_forward.get(cat["activations"], 0), recompute_act_peak),
        "activations_end_of_forward_bytes": end_of_forward.get(cat["activations"], 0),
        "activations_recompute_peak_bytes": recompute_act_peak,
        # What the step's peak holds beyond state, gradients and activations (and, under FSDP2, gathered
        # parameters and gradients and the collectives' buffers): backward and optimizer temporaries
        # (foreach/fused buffers count here, not as optimizer state).
        "temp_bytes": at_peak.get("Total", 0) - persistent - optimizer_bytes,
    }
    if getattr(optimizer, "is_paged", False):  # bitsandbytes' paged optimizers; other optimizers have no such part
        memory["optimizer_paged_bytes"] = optimizer_paged_bytes(optimizer)
    if fsdp:
        memory["fsdp"] = {name: peaks.get(ref, 0) for name, ref in transient.items()}
        memory["fsdp"]["gathered_peak_bytes"] = tracked.gathered_peak
    workload.reset_grads()
    memory.update(_peaks(phases, rss, quant_bytes, device))
    return memory


def _peaks(phases: dict, rss: RssPeak, quant_bytes: int, device: torch.device) -> dict:
    """The step's and fwd_infer's peaks by every counter, and how they were counted."""
    step, infer = phases["step"], phases["fwd_infer"]
    memory = dict(
        {
            "peak_step_bytes": step["tracked_peak_bytes"],
            "peak_infer_bytes": infer["tracked_peak_bytes"],
            "peak_infer_holds": PEAK_INFER_HOLDS,
            "rss_peak_bytes": step["rss_peak_bytes"],
            "rss_method": rss.method,
            "torch_max_allocated_bytes": step.get("torch_max_allocated_bytes"),
            "torch_max_reserved_bytes": step.get("torch_max_reserved_bytes"),
            "nvml_process_bytes": step.get("nvml_process_bytes"),
            "nvml_device_bytes": step.get("nvml_device_bytes"),
            "phase": phases,
            "accounting": (
                "MemTracker (torch.distributed._tools.mem_tracker): fwd_infer once before the first optimizer step "
                "tracking the model alone; fwd_train, fwd_bwd and step once each after warm-up; params_bytes adds "
                "bitsandbytes 4-bit quant_state tensors counted directly"
                + (f" ({quant_bytes} B)" if quant_bytes else "")
                + "; optimizer_bytes_direct walks optimizer.state as a cross-check; on CUDA every storage is "
                "counted as the caching allocator holds it (512-byte blocks)"
            ),
        }
    )
    memory["train_to_infer_memory_ratio"] = (
        memory["peak_step_bytes"] / memory["peak_infer_bytes"] if memory["peak_infer_bytes"] else None
    )
    if device.type == "cuda" and step.get("torch_max_allocated_bytes") and infer.get("torch_max_allocated_bytes"):
        memory["train_to_infer_allocated_ratio"] = (
            step["torch_max_allocated_bytes"] / infer["torch_max_allocated_bytes"]
        )
    return memory
