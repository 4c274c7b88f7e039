"""What a CUDA run computes differently from the CPU one, for a trace on the CPU device type that predicts a CUDA
run (harness/measure/traced.py). Two of the dispatcher's choices hold different bytes for backward:

- dropout: on CUDA `F.dropout` runs the fused kernel (at::native_dropout, chosen by is_fused_kernel_acceptable)
  and saves a one-byte mask; on the CPU it multiplies by a mask in the input's dtype (4 bytes a value under fp32).
- autocast: CUDA's autocast runs more ops in fp32 than the CPU's (aten/src/ATen/autocast_mode.h, the fp32 and
  fp32-set-opt-dtype lists; CPU autocast leaves softmax, layer_norm, pow, ... in 16 bits). Their outputs, and what
  they save (layer_norm and pow their fp32 input, softmax its fp32 output), are fp32 there.

Both are patched on the functions themselves while a trace runs (mock.patch, process-wide): a TorchFunctionMode
is thread-local, and checkpointing's recompute inside backward does not see it. tests/test_cuda_ops.py checks the
lists against the installed torch's own CUDA autocast kernels, run on fake CUDA tensors.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from unittest import mock

import torch
import torch.nn.functional as F

# CUDA autocast's fp32 list, the ops a model here calls: each floating input is cast to fp32 (a copy the op may save)
FP32_CAST = (
    "pow",
    "exp",
    "log",
    "rsqrt",
    "reciprocal",
    "expm1",
    "log1p",
    "layer_norm",
    "group_norm",
    "rms_norm",
    "softplus",
    "norm",
    "logsumexp",
)
# its fp32-set-opt-dtype list: the op runs with dtype=fp32 (no fp32 copy of the input is kept)
FP32_DTYPE = ("softmax", "log_softmax", "sum", "cumsum")
# where models reach them: torch.pow, Tensor.pow, x ** y, F.layer_norm, ...
OWNERS = (torch, torch.Tensor, F, torch.linalg)
POW_OPERATORS = ("__pow__", "__rpow__")


def _16_bit(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16)


def _in_fp32(original: Callable, set_dtype: bool) -> Callable:
    """`original` as CUDA autocast runs it, where CPU autocast is on (the trace's amp precisions)."""

    @functools.wraps(original)
    def run(*args, **kwargs):
        if not torch.is_autocast_enabled("cpu") or not any(map(_16_bit, (*args, *kwargs.values()))):
            return original(*args, **kwargs)
        if set_dtype:
            if kwargs.get("dtype") is None and not any(isinstance(a, torch.dtype) for a in args):
                kwargs = {**kwargs, "dtype": torch.float32}
            return original(*args, **kwargs)
        cast = [a.float() if _16_bit(a) else a for a in args]
        return original(*cast, **{k: v.float() if _16_bit(v) else v for k, v in kwargs.items()})

    return run


def _fused_dropout(original: Callable) -> Callable:
    @functools.wraps(original)
    def dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if training and 0 < p < 1 and not inplace and input.numel() > 0:
            return torch.native_dropout(input, p, True)[0]  # what at::dropout runs for a CUDA tensor
        return original(input, p, training, inplace)

    return dropout


def patched() -> list[tuple[object, str, Callable]]:
    """(owner, name, replacement) for every function the CUDA choices replace."""
    out = [(F, "dropout", _fused_dropout(F.dropout))]
    for names, set_dtype in ((FP32_CAST, False), (FP32_DTYPE, True)):
        for owner in OWNERS:
            out += [(owner, n, _in_fp32(getattr(owner, n), set_dtype)) for n in names if hasattr(owner, n)]
    out += [(torch.Tensor, n, _in_fp32(getattr(torch.Tensor, n), False)) for n in POW_OPERATORS]
    return out


@contextlib.contextmanager
def cuda_op_choices() -> Iterator[None]:
    """Within: dropout and autocast choose as on CUDA, for tensors on any device."""
    with contextlib.ExitStack() as stack:
        for owner, name, replacement in patched():
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield
