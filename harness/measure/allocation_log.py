"""A run's allocations and frees, in order, fed to the caching allocator's rules (harness/predict/caching_allocator.py):
every storage an op makes is a request of its size, and its release (the storage's last reference gone, seen by a
weakref callback, as torch's MemTracker tracks storages) returns the block. It watches ops through a
TorchDispatchMode, so it runs on real or fake tensors alike (under FakeTensorMode nothing is allocated).

What it cannot see: a kernel's own scratch space freed before the op returns (CUDA kernels' workspaces, cuBLAS's),
and a storage resized in place (`resize_`, `set_`); it counts each storage once, at the size it was made.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from harness.predict.caching_allocator import CachingAllocator


class AllocationLog(TorchDispatchMode):
    """Feeds `allocator` with the storages the ops run inside it make and release; `requests` counts them."""

    def __init__(self, allocator: CachingAllocator):
        super().__init__()
        self.allocator = allocator
        self.requests = 0
        self._seen = WeakIdKeyDictionary()
        self._open = True

    def _released(self, block) -> None:
        if self._open:  # after the run is over, what is freed is no longer part of it
            self.allocator.free(block)

    def add(self, tensor: torch.Tensor) -> None:
        """Count `tensor`'s storage once, from now until its last reference goes."""
        if tensor.device.type == "meta" or tensor.layout != torch.strided:  # no storage of its own to count
            return
        storage = tensor.untyped_storage()
        if storage in self._seen:
            return
        block = self.allocator.malloc(storage.nbytes())
        self._seen[storage] = True
        self.requests += 1
        weakref.finalize(storage, self._released, block).atexit = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out

    def __exit__(self, *exc):
        self._open = False
        return super().__exit__(*exc)
