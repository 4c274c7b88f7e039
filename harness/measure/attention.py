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

from harness.spec.shapes import FORWARD_PHASES

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
            choice = torch.nn.attention.SDPBackend(torch._fused_sdp_choice(*args, **kwargs))
            self.kernels.append(KERNEL_NAMES.get(choice.name, choice.name.lower()))
        return func(*args, **kwargs)


def kernel_name(kernels: list[str]) -> str | None:
    """One name for a forward's attention calls ("flash"; "flash+math" if layers differed; None if none)."""
    return "+".join(sorted(set(kernels))) or None


def kernels_used(workload) -> dict | None:
    """{fwd_train: kernel, fwd_infer: kernel} for a transformers model; None for a model without attention."""
    config = getattr(workload.model, "config", None)
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
