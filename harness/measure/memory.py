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
import re
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

from harness.spec.allocator import allocated_bytes
from harness.records.schema import PEAK_INFER_HOLDS
from harness.measure.workload import Workload
from harness.spec.shapes import TRAINING_PHASES


def _storage_key(t: torch.Tensor) -> tuple:
    st = t.untyped_storage()
    return (st.data_ptr(), st.device.type, st.device.index)


def unique_tensor_bytes(tensors) -> int:
    """Bytes the allocator holds for the distinct storages behind `tensors` (views and shared storages
    counted once; each rounded as its device's allocator rounds it, as MemTracker counts: harness/spec/allocator.py)."""
    seen: dict[tuple, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            seen[_storage_key(t)] = allocated_bytes(t.untyped_storage().nbytes(), t.device.type)
    return sum(seen.values())


def _quant_state_tensors(qs: Any):
    for name in ("absmax", "code", "offset"):
        t = getattr(qs, name, None)
        if isinstance(t, torch.Tensor):
            yield t
    nested = getattr(qs, "state2", None)
    if nested is not None:
        yield from _quant_state_tensors(nested)


def quantization_state_bytes(model: torch.nn.Module) -> int:
    """Exact bytes of bitsandbytes 4-bit quantization state, which no tracker attributes to the model."""
    tensors = []
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            tensors.extend(_quant_state_tensors(qs))
    return unique_tensor_bytes(tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return unique_tensor_bytes(v for state in optimizer.state.values() for v in state.values())


def optimizer_state_dtypes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Element counts of optimizer state by dtype (e.g. uint8 for 8-bit AdamW), per state key kind."""
    counts: dict[str, int] = {}
    for state in optimizer.state.values():
        for key, v in state.items():
            if isinstance(v, torch.Tensor) and key in ("exp_avg", "exp_avg_sq", "state1", "state2"):
                dtype = str(v.dtype).removeprefix("torch.")
                counts[dtype] = counts.get(dtype, 0) + v.numel()
    return counts


class CategoryPeakTracker(MemTracker):
    """MemTracker that also keeps the peak of each category, and the activation peak during recomputation.

    The activation peak (end of the forward) and the gradient peak (end of the backward) happen at other
    moments than the step's total peak; one snapshot cannot give all three. MemTracker marks a module
    forward that runs inside backward (recomputation under checkpointing) with `_in_ac`; activations
    recreated there count while they live.
    """

    def __init__(self) -> None:
        super().__init__()
        self.category_peaks: dict[str, int] = {}
        self.recompute_act_peak = 0

    def track_external(self, *external) -> None:
        # MemTracker hooks every parameter for its gradient, and register_hook raises on a frozen one (the
        # LoRA/QLoRA base). Frozen parameters never get a gradient: mark them hooked with a no-op handle.
        for obj in external:
            if isinstance(obj, torch.nn.Module):
                for param in obj.parameters():
                    if not param.requires_grad:
                        self._param_to_grad_hook_handles.setdefault(param, (_NoHook(), _NoHook()))
        super().track_external(*external)

    def _update_peak_stats(self, peak_state) -> None:
        super()._update_peak_stats(peak_state)
        recomputing = self._mod_tracker.is_bw and self._in_ac
        for dev_snap in self._curr_mem_snap.values():
            for ref, value in dev_snap.items():
                key = _key(ref)
                if value > self.category_peaks.get(key, 0):
                    self.category_peaks[key] = value
                if recomputing and key == _MemRefType.ACT.value:
                    self.recompute_act_peak = max(self.recompute_act_peak, value)


class _NoHook:
    def remove(self) -> None:
        pass


def _key(ref) -> str:
    return ref.value if hasattr(ref, "value") else str(ref)


def _snap(tracker: MemTracker, kind: str) -> dict[str, int]:
    """Sum a tracker snapshot over devices, keyed by category name."""
    out: dict[str, int] = {}
    for dev_snap in tracker.get_tracker_snapshot(kind).values():
        for ref, value in dev_snap.items():
            key = _key(ref)
            out[key] = out.get(key, 0) + value
    return out


class RssPeak:
    """Peak resident set size of this process within a phase.

    Linux keeps the high-water mark in /proc/self/status (VmHWM); writing 5 to /proc/self/clear_refs
    resets it. Where that is not allowed, a sampling thread reads VmRSS every millisecond instead, which
    can miss short spikes; `method` says which was used.
    """

    def __init__(self) -> None:
        self.method = "VmHWM (reset via /proc/self/clear_refs)"
        try:
            self._clear()
            self._read("VmHWM")
        except OSError:
            self.method = "VmRSS sampled every 1 ms (clear_refs not allowed)"
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _clear() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def _read(field: str) -> int:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
        if not match:
            raise OSError(f"{field} not in /proc/self/status")
        return int(match.group(1)) * 1024

    def start(self) -> None:
        if self.method.startswith("VmHWM"):
            self._clear()
            return
        self._sampled = self._read("VmRSS")
        self._stop.clear()

        def sample() -> None:
            while not self._stop.wait(0.001):
                self._sampled = max(self._sampled, self._read("VmRSS"))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        if self.method.startswith("VmHWM"):
            return self._read("VmHWM")
        self._stop.set()
        if self._thread:
            self._thread.join()
        return max(self._sampled, self._read("VmRSS"))


ALLOCATOR_COUNTERS = {"allocator_retries": "num_alloc_retries", "allocator_ooms": "num_ooms"}


class DevicePhase:
    """The device-level figures of one phase: the allocator's cache is released and every peak reset before
    it (so reserved memory and NVML's reading belong to this phase, not to an earlier one), and the allocator's
    counters are taken as deltas over it."""

    def __init__(self, device: torch.device, nvml=None):
        self.device, self.nvml = device, nvml

    def __enter__(self) -> "DevicePhase":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._counters = torch.cuda.memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def figures(self) -> dict:
        if self.device.type != "cuda":
            return {}
        torch.cuda.synchronize(self.device)
        stats = torch.cuda.memory_stats(self.device)
        out = {
            "torch_max_allocated_bytes": int(torch.cuda.max_memory_allocated(self.device)),
            "torch_max_reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
            "torch_reserved_bytes": int(torch.cuda.memory_reserved(self.device)),
            **{name: int(stats.get(key, 0)) - int(self._counters.get(key, 0))
               for name, key in ALLOCATOR_COUNTERS.items()},
        }
        if self.nvml is not None:
            out.update(self.nvml.reading())
            if out.get("nvml_process_bytes") is not None:
                # What the allocator never sees: the CUDA context, kernels loaded, library handles
                out["context_overhead_bytes"] = out["nvml_process_bytes"] - out["torch_reserved_bytes"]
        return out


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


def _tracked_phase(workload: Workload, phase: str, tracked: tuple, nvml, quant_bytes: int,
                   rss: "RssPeak") -> TrackedPhase:
    """One run of `phase` under the tracker and the device counters."""
    workload.reset_grads()
    gc.collect()
    end_of_forward: dict[str, int] = {}
    unreleased = None
    with DevicePhase(workload.device, nvml) as device_phase:
        tracker = CategoryPeakTracker()
        tracker.track_external(*tracked)
        at_entry = _snap(tracker, "current")
        rss.start()
        with tracker:
            if phase == "step":
                # The same work as Workload.step, opened up to read what the forward leaves for backward.
                loss = workload.forward_loss()
                end_of_forward = _snap(tracker, "current")
                workload.backward(loss)
                del loss
                workload.optimizer_step()
            elif phase == "fwd_train":
                unreleased = workload.forward_loss()
            else:
                workload.run(phase, instrumented=True)
        at_peak = _snap(tracker, "peak")
        figures = {"tracked_peak_bytes": at_peak.get("Total", 0) + quant_bytes, "rss_peak_bytes": rss.stop(),
                   **device_phase.figures()}
    if unreleased is not None:
        workload.release_graph(unreleased)  # after the figures were read
    result = TrackedPhase(figures, at_entry, at_peak, dict(tracker.category_peaks), tracker.recompute_act_peak,
                          end_of_forward)
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
    return _tracked_phase(workload, "fwd_infer", (workload.model,), nvml, quantization_state_bytes(workload.model),
                          RssPeak()).figures


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
    optimizer_bytes = at_entry.get(_MemRefType.OPT.value, 0)
    persistent = (at_peak.get(_MemRefType.PARAM.value, 0) + at_peak.get(_MemRefType.BUFFER.value, 0)
                  + at_peak.get(_MemRefType.GRAD.value, 0) + at_peak.get(_MemRefType.ACT.value, 0))
    memory = {
        "params_bytes": at_entry.get(_MemRefType.PARAM.value, 0) + quant_bytes,
        "buffers_bytes": at_entry.get(_MemRefType.BUFFER.value, 0),
        "quantization_state_bytes": quant_bytes,
        "grads_bytes": peaks.get(_MemRefType.GRAD.value, 0),
        "optimizer_bytes": optimizer_bytes,
        "optimizer_bytes_direct": optimizer_state_bytes(optimizer),
        # What the forward holds for backward (read at its end, so forward temporaries already freed are
        # out), or more where recomputation under checkpointing brings more back at once.
        "activations_bytes": max(end_of_forward.get(_MemRefType.ACT.value, 0), recompute_act_peak),
        "activations_end_of_forward_bytes": end_of_forward.get(_MemRefType.ACT.value, 0),
        "activations_recompute_peak_bytes": recompute_act_peak,
        # What the step's peak holds beyond state, gradients and activations: backward and optimizer
        # temporaries (foreach/fused buffers count here, not as optimizer state).
        "temp_bytes": at_peak.get("Total", 0) - persistent - optimizer_bytes,
    }
    workload.reset_grads()
    step, infer = phases["step"], phases["fwd_infer"]
    memory.update({
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
              "counted as the caching allocator holds it (512-byte blocks)"),
    })
    memory["train_to_infer_memory_ratio"] = (
        memory["peak_step_bytes"] / memory["peak_infer_bytes"] if memory["peak_infer_bytes"] else None)
    if device.type == "cuda" and step.get("torch_max_allocated_bytes") and infer.get("torch_max_allocated_bytes"):
        memory["train_to_infer_allocated_ratio"] = (step["torch_max_allocated_bytes"]
                                                    / infer["torch_max_allocated_bytes"])
    return memory
