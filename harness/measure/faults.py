"""Which exceptions mean "out of memory": a case that raises one records `oom`, not `error`."""

from __future__ import annotations

import torch

# Allocation failures that do not arrive as torch.OutOfMemoryError: cuBLAS and cuDNN allocate their own
# handles and workspaces, and a failed cudaMalloc outside the caching allocator (the context, a library) is
# a RuntimeError. Each is the device running out of memory, so the case records `oom`, not `error`.
OOM_MESSAGES = (
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: out of memory",
    "CUDA out of memory",
    "cudaErrorMemoryAllocation",
)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in OOM_MESSAGES)
