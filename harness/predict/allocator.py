"""What a device's allocator holds for a tensor of n bytes: the one rounding rule, shared by the tracker-side
checks (harness/measure/checks.py, harness/measure/memory.py) and the analytic model (harness/predict/analytic.py).
No torch here.

PyTorch's CUDA caching allocator hands out blocks in multiples of 512 bytes (kMinBlockSize; `round_size` in
c10/cuda/CUDACachingAllocator.cpp), so `torch.cuda.memory_allocated` and torch's MemTracker (which mirrors the
rule, `_PYTORCH_MIN_ALLOCATE`) count a 4-byte AdamW `step` tensor as 512 bytes and a 1000-byte tensor as 1024.
With PYTORCH_NO_CUDA_MEMORY_CACHING=1 there is no caching allocator and no rounding. A CPU tensor takes its
storage's size. An empty storage takes nothing (the allocator is not called for 0 bytes).
"""

from __future__ import annotations

import math
import os

CUDA_BLOCK_BYTES = 512


def block_bytes(device_type: str) -> int:
    """The allocation granularity of `device_type` ("cuda", "cpu", ...) in this process's environment."""
    if device_type != "cuda" or int(os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING", 0)):
        return 1
    return CUDA_BLOCK_BYTES


def rounded(nbytes: int, block: int = CUDA_BLOCK_BYTES) -> int:
    """`nbytes` rounded up to a whole number of `block`-byte blocks."""
    return math.ceil(nbytes / block) * block


def allocated_bytes(nbytes: int, device_type: str) -> int:
    """Bytes the allocator of `device_type` holds for a storage of `nbytes` bytes."""
    return rounded(nbytes, block_bytes(device_type))


def allocated_total(sizes, device_type: str) -> int:
    """Sum over distinct storages, each rounded on its own (rounding is per block, never of the sum)."""
    return sum(allocated_bytes(n, device_type) for n in sizes)
