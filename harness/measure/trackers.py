"""The instruments of the memory pass: torch's MemTracker with per-category peaks, the process's RSS peak,
and the device-level figures of one phase (the CUDA allocator's peaks and counters, NVML's reading)."""

from __future__ import annotations

import re
import threading

import torch
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker, _FSDPRefType
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

# FSDP2's parameters gathered for compute: a unit's unsharded parameters, and the all-gather buffers in flight
# (the next unit's, prefetched while this one computes)
GATHERED = (_FSDPRefType.UNSHARDED_PARAM.value, _FSDPRefType.ALL_GATHER.value)


class CategoryPeaks:
    """Mixed into torch's trackers: the peak of each category, and the activation peak during recomputation.

    The activation peak (end of the forward) and the gradient peak (end of the backward) happen at other
    moments than the step's total peak; one snapshot cannot give all three. MemTracker marks a module
    forward that runs inside backward (recomputation under checkpointing) with `_in_ac`; activations
    recreated there count while they live.
    """

    category_peaks: dict[str, int]
    recompute_act_peak: int
    gathered_peak: int

    def _update_peak_stats(self, peak_state) -> None:
        super()._update_peak_stats(peak_state)
        recomputing = self._mod_tracker.is_bw and self._in_ac
        gathered = 0
        for dev_snap in self._curr_mem_snap.values():
            for ref, value in dev_snap.items():
                key = ref_key(ref)
                if value > self.category_peaks.get(key, 0):
                    self.category_peaks[key] = value
                if recomputing and key == _MemRefType.ACT.value:
                    self.recompute_act_peak = max(self.recompute_act_peak, value)
                if key in GATHERED:
                    gathered += value
        self.gathered_peak = max(self.gathered_peak, gathered)


class CategoryPeakTracker(CategoryPeaks, MemTracker):
    """MemTracker with category peaks, for a model in one process (or a DDP replica)."""

    def __init__(self) -> None:
        super().__init__()
        self.category_peaks: dict[str, int] = {}
        self.recompute_act_peak = self.gathered_peak = 0

    def track_external(self, *external) -> None:
        # MemTracker hooks every parameter for its gradient, and register_hook raises on a frozen one (the
        # LoRA/QLoRA base). Frozen parameters never get a gradient: mark them hooked with a no-op handle.
        for obj in external:
            if isinstance(obj, torch.nn.Module):
                for param in obj.parameters():
                    if not param.requires_grad:
                        self._param_to_grad_hook_handles.setdefault(param, (NoHook(), NoHook()))
        super().track_external(*external)


class FsdpCategoryPeakTracker(CategoryPeaks, FSDPMemTracker):
    """FSDPMemTracker with category peaks, for an FSDP2 model: it tells sharded from gathered parameters and
    gradients, and counts the all-gather and reduce-scatter buffers."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        super().__init__(model, optimizer)
        self.category_peaks: dict[str, int] = {}
        self.recompute_act_peak = self.gathered_peak = 0


class NoHook:
    def remove(self) -> None:
        pass


def ref_key(ref) -> str:
    return ref.value if hasattr(ref, "value") else str(ref)


def snapshot(tracker: MemTracker, kind: str) -> dict[str, int]:
    """Sum a tracker snapshot over devices, keyed by category name."""
    out: dict[str, int] = {}
    for dev_snap in tracker.get_tracker_snapshot(kind).values():
        for ref, value in dev_snap.items():
            key = ref_key(ref)
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
            **{
                name: int(stats.get(key, 0)) - int(self._counters.get(key, 0))
                for name, key in ALLOCATOR_COUNTERS.items()
            },
        }
        if self.nvml is not None:
            out.update(self.nvml.reading())
            if out.get("nvml_process_bytes") is not None:
                # What the allocator never sees: the CUDA context, kernels loaded, library handles
                out["context_overhead_bytes"] = out["nvml_process_bytes"] - out["torch_reserved_bytes"]
        return out
