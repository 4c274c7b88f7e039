"""Which attention kernel actually ran: SDPA picks flash, memory-efficient, cuDNN or its math fallback per call,
from the inputs' dtype, shapes, head counts and the build; the math fallback materialises s x s scores per head,
so an activation figure cannot be explained without knowing which one ran.

The choice is read the way SDPA makes it: a TorchFunctionMode sees each `scaled_dot_product_attention` call with
its real arguments and asks `torch._fused_sdp_choice`, the function SDPA dispatches on, about those arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from harness.config.rules import FORWARD_PHASES

# SDPBackend names -> the names records use
KERNEL_NAMES = {
    "FLASH_ATTENTION": "flash",
    "EFFICIENT_ATTENTION": "efficient",
    "CUDNN_ATTENTION": "cudnn",
    "MATH": "math",
    "OVERRIDEABLE": "overrideable",
}


class _SdpaChoices(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            cast_args, cast_kwargs = _as_autocast_runs_it(args, kwargs)
            choice = torch.nn.attention.SDPBackend(torch._fused_sdp_choice(*cast_args, **cast_kwargs))
            self.kernels.append(KERNEL_NAMES.get(choice.name, choice.name.lower()))
        return func(*args, **kwargs)


def _as_autocast_runs_it(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """SDPA is on autocast's lower-precision list: under autocast the kernel is chosen for q, k, v (and a float
    mask) cast to the autocast dtype, not for the dtypes the Python call sees (under amp, rotary leaves q and k in
    fp32 beside a 16-bit v, a mix only the math kernel takes)."""
    query = args[0] if args else kwargs.get("query")
    device_type = query.device.type
    if not torch.is_autocast_enabled(device_type):
        return args, kwargs
    dtype = torch.get_autocast_dtype(device_type)

    def cast(value):
        return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def kernel_name(kernels: list[str]) -> str | None:
    """One name for a forward's attention calls ("flash"; "flash+math" if layers differed; None if none)."""
    return "+".join(sorted(set(kernels))) or None


def kernels_used(workload) -> dict | None:
    """{fwd_train: kernel, fwd_infer: kernel} for a transformers model; None for a model without attention."""
    config = getattr(workload.base, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation is None:
        return None
    if implementation != "sdpa":
        return {phase: implementation for phase in FORWARD_PHASES}
    out = {}
    for phase in FORWARD_PHASES:
        mode = _SdpaChoices()
        with mode:
            workload.run(phase)
        out[phase] = kernel_name(mode.kernels)
    workload.reset_grads()
    return out
