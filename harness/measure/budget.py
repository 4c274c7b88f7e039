"""Memory budgets: make a case behave as if the device had `device.memory_budget_gib` GiB.

CUDA: the caching allocator is capped with torch.cuda.set_per_process_memory_fraction at the budget minus
what this process's CUDA context takes outside the allocator, measured after the libraries the case uses
(cuBLAS, cuDNN, bitsandbytes, the SDPA kernels) have been loaded (harness/measure/cuda_context.py). Other processes'
memory is not subtracted: it is not part of the card being emulated (it is recorded, and warned about).

CPU: what a device would hold is the bytes of live tensors, not the Python process around them. A
TorchDispatchMode counts every storage from the start of the case: the model as it is built, the synthetic
batch, then every op's new output storages as they appear, dropping them when they are freed (weak references
on the storages, as torch's MemTracker does). A factory op (empty, randn, zeros, ...) is sized on the meta
device before it runs, so an input or a model far over the budget fails without being allocated (a 17 GB
batch under a 1 GiB budget is an `oom` record, not a process killed by the kernel); any other op whose outputs
take the total over the budget fails after it ran, with an OutOfMemoryError, the way a CUDA allocation does.
The mode is active for everything but the timed loop (whose peaks the warm-up reached first), so timed
repetitions carry no accounting overhead.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.units import GIB

META = torch.device("meta")


class BudgetExceeded(torch.OutOfMemoryError):
    """An allocation over an emulated budget; carries the figures up to that point."""

    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


def _factory_output_bytes(func, args, kwargs) -> int | None:
    """Bytes a factory op (no tensor inputs, a `device` argument) would allocate, from a dry run on the meta
    device; None for any other op, or where the dry run is not possible."""
    if not any(a.name == "device" for a in func._schema.arguments):
        return None
    if any(isinstance(x, torch.Tensor) for x in tree_flatten((args, kwargs))[0]):
        return None
    try:
        out = func(*args, **{**kwargs, "device": META})
    except Exception:  # an op with no meta kernel: counted after it runs, like every other op
        return None
    return sum(t.untyped_storage().nbytes() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))


class CpuBudget(TorchDispatchMode):
    """Live tensor bytes against a budget; `stage` is the case's progress (its `name` goes into the figures)."""

    def __init__(self, budget_bytes: int, stage: Any):
        super().__init__()
        self.budget_bytes = budget_bytes
        self.stage = stage
        self.live: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.live_bytes = 0
        self.peak_bytes = 0

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

    def admit(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count tensors made where the mode could not see them (loaded from files, made while it was off),
        then fail if the total is already over the budget."""
        added = sum(self._add(t) for t in tensors)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        if self.live_bytes > self.budget_bytes:
            self._fail(added, self.live_bytes, "the tensors the case holds")

    def _fail(self, request: int, live_with_request: int, what: str) -> None:
        figures = {
            "budget_bytes": self.budget_bytes,
            "live_bytes": live_with_request,
            "request_bytes": request,
            "peak_bytes_before_failure": self.peak_bytes,
            "op": what,
        }
        raise BudgetExceeded(
            f"CPU: {what} asked for {request} bytes with {live_with_request - request} live; that is over the "
            f"emulated budget of {self.budget_bytes / GIB:.3f} GiB ({self.budget_bytes} bytes) in phase "
            f"{self.stage.name}",
            figures,
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        planned = _factory_output_bytes(func, args, kwargs)
        if planned is not None and self.live_bytes + planned > self.budget_bytes:
            self._fail(planned, self.live_bytes + planned, f"{func} (refused before allocating)")
        out = func(*args, **kwargs)
        added = sum(self._add(t) for t in tree_flatten(out)[0])
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        if added and self.live_bytes > self.budget_bytes:
            self._fail(added, self.live_bytes, str(func))
        return out

    def info(self) -> dict:
        return {
            "budget_bytes": self.budget_bytes,
            "emulated": True,
            "method": "CPU: live tensor bytes counted by a TorchDispatchMode from the start of the case, "
            "all but the timed loop (harness/measure/budget.py)",
            "peak_live_bytes": self.peak_bytes,
        }


def workload_roots(workload) -> Iterator[torch.Tensor]:
    """Every tensor the case holds between phases: model, gradients, optimizer state, inputs."""
    from harness.measure.memory import quant_state_tensors

    model = workload.model
    for p in model.parameters():
        yield p
        if p.grad is not None:
            yield p.grad
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            yield from quant_state_tensors(qs)
    yield from model.buffers()
    for state in workload.optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                yield value
    for value in [*workload.inputs.values(), *workload.train_kwargs.values()]:
        if isinstance(value, torch.Tensor):
            yield value


@contextlib.contextmanager
def counting(budget: CpuBudget | None, workload=None) -> Iterator[None]:
    """While inside, every allocation counts against `budget` (nothing happens without one). With the workload,
    what it holds is admitted first: tensors made while the mode was off are counted."""
    if budget is None:
        yield
        return
    if workload is not None:
        budget.admit(workload_roots(workload))
    with budget:
        yield


def cuda_budget(device: torch.device, budget_bytes: int, context: dict) -> dict:
    """Cap the caching allocator so that allocator + this process's CUDA context stay within the budget.
    `context` is harness.measure.cuda_context.measure's reading, taken after the libraries were loaded."""
    context_bytes = context.get("context_bytes")
    if context_bytes is None:
        raise RuntimeError(f"CUDA budget: the context could not be measured ({context.get('method')})")
    total = torch.cuda.mem_get_info(device)[1]  # what the allocator's fraction is taken of
    allowed = budget_bytes - context_bytes
    if allowed <= 0:
        raise BudgetExceeded(
            f"CUDA: the context already takes {context_bytes} bytes of the {budget_bytes}-byte budget",
            {
                "budget_bytes": budget_bytes,
                "live_bytes": context_bytes,
                "request_bytes": 0,
                "peak_bytes_before_failure": context_bytes,
                "op": None,
            },
        )
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
    return {
        "budget_bytes": budget_bytes,
        "emulated": True,
        "method": "CUDA: torch.cuda.set_per_process_memory_fraction at the budget minus this process's "
        "context, measured after loading cuBLAS/cuDNN/SDPA/bitsandbytes",
        "context_bytes": context_bytes,
        "context_method": context.get("method"),
        "allocator_cap_bytes": allowed,
        "device_total_bytes": int(total),
    }
