"""This process's CUDA context: what the device holds for it outside PyTorch's caching allocator — the
context itself, the kernels loaded (CUDA loads modules lazily, on a kernel's first launch), cuBLAS/cuBLASLt
and cuDNN handles, bitsandbytes' library.

It is measured only after everything the case will use has been created (`load_libraries`): measured right
after `torch.empty(1)` it misses most of that, and a budget computed from it emulates a larger card than the
real one. The allocator's own memory (including the cuBLAS workspaces it hands out) is `memory_reserved`; the
context is what the process holds beyond that.
"""

from __future__ import annotations

import torch

from harness.config.groups import BenchConfig
from harness.config.rules import BITSANDBYTES_METHODS
from harness.measure.methods import AUTOCAST_DTYPE, PRECISION_WEIGHT_DTYPE


def load_libraries(device: torch.device, cfg: BenchConfig) -> list[str]:
    """Create the handles, workspaces and kernels the case will use, forward and backward, in the dtypes it
    computes in; returns what was loaded (for the record)."""
    loaded = []
    dtypes = {PRECISION_WEIGHT_DTYPE[cfg.precision.name], AUTOCAST_DTYPE.get(cfg.precision.name, torch.float32)}
    if cfg.method.name == "qlora":
        dtypes.add(torch.bfloat16)  # NF4 matmuls compute in bf16 whatever the precision
    with torch.cuda.device(device):
        for dtype in sorted(dtypes, key=str):
            a = torch.randn(64, 64, device=device, dtype=dtype, requires_grad=True)
            (a @ a).sum().backward()  # cuBLAS / cuBLASLt handles and workspaces, forward and backward
            q = torch.randn(1, 2, 16, 64, device=device, dtype=dtype, requires_grad=True)
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
            loaded.append(f"cuBLAS + SDPA ({str(dtype).removeprefix('torch.')})")
        if torch.backends.cudnn.is_available():
            x = torch.randn(1, 1, 8, 8, device=device)
            torch.nn.functional.conv2d(x, torch.randn(1, 1, 3, 3, device=device))
            loaded.append("cuDNN")
        if cfg.method.name in BITSANDBYTES_METHODS:
            import bitsandbytes as bnb
            import bitsandbytes.functional as bnbf

            if cfg.method.name == "qlora":
                w = torch.randn(64, 64, device=device, dtype=torch.bfloat16)
                packed, state = bnbf.quantize_4bit(w, quant_type="nf4")
                bnbf.dequantize_4bit(packed, state)
            else:  # one step of the 8-bit optimizer on a tensor large enough for 8-bit state
                p = torch.nn.Parameter(torch.randn(cfg.method.min_8bit_size, device=device))
                p.grad = torch.randn_like(p)
                bnb.optim.AdamW8bit([p], min_8bit_size=cfg.method.min_8bit_size).step()
            loaded.append("bitsandbytes")
        torch.cuda.synchronize(device)
    return loaded


def context_from(
    reserved_bytes: int,
    process_bytes: int | None = None,
    device_used_bytes: int | None = None,
    others_bytes: int | None = None,
) -> dict:
    """The context figure from what could be read, the best source first: NVML's per-process memory; else
    the device's used memory less other processes' (when NVML can tell them apart); else the device's used
    memory, which then includes any other process (said so)."""
    if process_bytes is not None:
        return {
            "context_bytes": process_bytes - reserved_bytes,
            "method": "NVML memory of this process minus torch's reserved memory",
        }
    if device_used_bytes is not None and others_bytes is not None:
        return {
            "context_bytes": device_used_bytes - others_bytes - reserved_bytes,
            "method": "device memory in use minus other processes' (NVML) minus torch's reserved memory",
        }
    if device_used_bytes is not None:
        return {
            "context_bytes": device_used_bytes - reserved_bytes,
            "method": "device memory in use minus torch's reserved memory: includes other processes' memory, "
            "if any (NVML cannot attribute memory to processes here)",
        }
    return {"context_bytes": None, "method": "nothing to read the device's memory from"}


def measure(device: torch.device, nvml=None) -> dict:
    """The context now, with the allocator's cache released first (so reserved is what is still allocated)."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    reserved = int(torch.cuda.memory_reserved(device))
    free, total = torch.cuda.mem_get_info(device)
    reading = nvml.reading() if nvml is not None and nvml.available else {}
    others = reading.get("other_processes")
    others_bytes = sum(p["bytes"] or 0 for p in others) if others is not None else None
    out = context_from(reserved, reading.get("nvml_process_bytes"), int(total - free), others_bytes)
    out.update(
        {
            "torch_reserved_bytes": reserved,
            "device_used_bytes": int(total - free),
            "other_processes_bytes": others_bytes,
        }
    )
    return out
