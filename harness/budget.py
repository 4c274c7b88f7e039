"""Memory budgets: make a case behave as if the device had `device.memory_budget_gib` GiB.

CUDA: the caching allocator is capped with torch.cuda.set_per_process_memory_fraction at the budget minus
what the CUDA context already takes (which the allocator never sees), so an allocation over the budget fails
with torch's own OutOfMemoryError.

CPU: what a device would hold is the bytes of live tensors, not the Python process around them. A
TorchDispatchMode counts every storage the parameters, buffers, gradients, optimizer state and inputs hold,
adds each op's new output storages as they appear and drops them when they are freed (weak references on
the storages, as torch's MemTracker does); an op whose outputs take the total over the budget fails with an
OutOfMemoryError, the way a CUDA allocation does. The mode only runs while the warm-up goes through every
phase once (where every peak is first reached), so timed repetitions carry no accounting overhead.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GIB = 1024 ** 3


class BudgetExceeded(torch.OutOfMemoryError):
    """An allocation over an emulated budget; carries the figures up to that point."""

    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


class CpuBudget(TorchDispatchMode):
    def __init__(self, budget_bytes: int, roots: Iterable[torch.Tensor]):
        super().__init__()
        self.budget_bytes = budget_bytes
        self.live: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        self.phase = "setup"
        for t in roots:
            self._add(t)
        self.peak_bytes = self.live_bytes

    def _add(self, t: Any) -> int:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return 0
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some subclasses)
            return 0
        key = id(storage)
        if key in self.live and self._refs[key]() is storage:
            return 0
        nbytes = storage.nbytes()
        self.live[key] = nbytes
        self._refs[key] = weakref.ref(storage, lambda _, key=key: self._free(key))
        self.live_bytes += nbytes
        return nbytes

    def _free(self, key: int) -> None:
        nbytes = self.live.pop(key, 0)
        self._refs.pop(key, None)
        self.live_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        added = sum(self._add(t) for t in tree_flatten(out)[0])
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        if added and self.live_bytes > self.budget_bytes:
            figures = {"phase": self.phase, "budget_bytes": self.budget_bytes, "live_bytes": self.live_bytes,
                       "request_bytes": added, "peak_bytes_before_failure": self.peak_bytes, "op": str(func)}
            raise BudgetExceeded(
                f"CPU: {func} allocated {added} bytes with {self.live_bytes - added} live; that is over the "
                f"emulated budget of {self.budget_bytes / GIB:.3f} GiB ({self.budget_bytes} bytes) in phase "
                f"{self.phase}", figures)
        return out


def workload_roots(workload) -> Iterator[torch.Tensor]:
    """Every tensor the case holds before a phase runs: model, gradients, optimizer state, inputs."""
    from harness.memory import _quant_state_tensors

    model = workload.model
    for p in model.parameters():
        yield p
        if p.grad is not None:
            yield p.grad
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            yield from _quant_state_tensors(qs)
    yield from model.buffers()
    for state in workload.optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                yield value
    for value in [*workload.inputs.values(), *workload.train_kwargs.values()]:
        if isinstance(value, torch.Tensor):
            yield value


@contextlib.contextmanager
def cpu_budget(workload, budget_bytes: int) -> Iterator[CpuBudget]:
    mode = CpuBudget(budget_bytes, workload_roots(workload))
    if mode.live_bytes > budget_bytes:  # the model alone does not fit
        raise BudgetExceeded(
            f"CPU: the model, its state and inputs take {mode.live_bytes} bytes before any phase runs; over the "
            f"emulated budget of {budget_bytes / GIB:.3f} GiB",
            {"phase": "load", "budget_bytes": budget_bytes, "live_bytes": mode.live_bytes, "request_bytes": 0,
             "peak_bytes_before_failure": mode.live_bytes, "op": None})
    with mode:
        yield mode


def cuda_budget(device: torch.device, budget_bytes: int) -> dict:
    """Cap the caching allocator so that allocator + CUDA context stay within the budget."""
    torch.cuda.init()
    torch.empty(1, device=device)  # create the context before measuring it
    free, total = torch.cuda.mem_get_info(device)
    context = max(0, total - free - torch.cuda.memory_reserved(device))  # context + other processes on the GPU
    allowed = budget_bytes - context
    if allowed <= 0:
        raise BudgetExceeded(f"CUDA: the context and other processes already take {context} bytes of the "
                             f"{budget_bytes}-byte budget", {"phase": "load", "budget_bytes": budget_bytes,
                                                              "live_bytes": context, "request_bytes": 0,
                                                              "peak_bytes_before_failure": context, "op": None})
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
    return {"context_and_others_bytes": context, "allocator_cap_bytes": allowed, "device_total_bytes": total}
