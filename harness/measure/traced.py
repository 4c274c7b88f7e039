"""A traced prediction, where no closed form is derived: the real model and method run one training forward and
backward under FakeTensorMode (tensors with shapes and dtypes, no storage: nothing is allocated), with PyTorch's
MemTracker counting what it would hold, as the memory pass counts a real run (harness/measure/memory.py). It runs
on the CPU device type (autograd on a fake CUDA tensor needs a CUDA build); predicting a CUDA run, it makes the
choices CUDA's dispatcher makes where the CPU's hold other bytes (harness/measure/cuda_ops.py).

QLoRA cannot be traced (bitsandbytes quantizes real weights as they load); its activations are LoRA's on a model in
the dtype of the weights it does not quantize, fp32 (upcast variant) or bf16 (harness/predict/activations.py says
why; tests/test_hf_activations.py and tests/test_qlora_bf16.py measure it), so the trace runs that instead and says
so.
"""

from __future__ import annotations

import contextlib
import dataclasses
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import _MemRefType

from harness import families
from harness.config.groups import BenchConfig
from harness.measure.cuda_ops import cuda_op_choices
from harness.measure.methods import build_trainable
from harness.measure.trackers import CategoryPeakTracker, snapshot
from harness.measure.workload import Workload
from harness.predict.activations import transformer_block
from harness.predict.estimate import with_value

ACT = _MemRefType.ACT.value


def traced_config(cfg: BenchConfig) -> tuple[BenchConfig | None, str]:
    """The configuration to trace (always on the CPU device type, with no memory budget), and what it stands for
    (None: what cannot be traced, and why)."""
    device = dataclasses.replace(cfg.device, name="cpu", memory_budget_gib=None)
    if cfg.method.name == "adamw8bit":
        # bitsandbytes' AdamW8bit fills its quantization maps from real values as it is built (create_dynamic_map:
        # tolist), which fake tensors have not; the trace runs no optimizer step and the optimizer holds no state
        # before one, so the same model trained by torch's AdamW keeps the same activations
        traced = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, name="full_adamw"), device=device)
        return traced, "traced with torch AdamW in place of AdamW8bit (the same trainable set and activations)"
    if cfg.method.name != "qlora":
        how = "traced: the model and method under FakeTensorMode with MemTracker"
        return dataclasses.replace(cfg, device=device), how
    precision = cfg.precision.name
    if precision not in ("fp32", "bf16"):
        # under autocast LoRA's fp32 base would keep 16-bit copies of its frozen weights, which 4-bit matmuls do not
        return None, "not traced: QLoRA under autocast (bitsandbytes quantizes real weights as they load)"
    traced = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, name="lora"), device=device)
    return traced, f"traced as LoRA on a {precision} model (QLoRA's activations), under FakeTensorMode with MemTracker"


def _to_by_assignment(self: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """Module.to for a traced model: each converted parameter and buffer is assigned, not swapped in place."""
    device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
    for module in self.modules():
        for key, p in list(module._parameters.items()):
            if p is not None:
                cast = dtype if dtype is not None and p.is_floating_point() else p.dtype
                module._parameters[key] = torch.nn.Parameter(p.to(device or p.device, cast), p.requires_grad)
        for key, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[key] = buffer.to(device or buffer.device)
    return self


def traced_activations(cfg: BenchConfig, device_type: str = "cpu") -> dict:
    """{activations_bytes, forward_peak_bytes, formula} from traced steps on the CPU device type, for a run on
    `device_type`; activations_bytes None with the reason where the trace fails. A decoder holds a + b x layers for
    backward and at its forward's peak (each layer alike, with or without checkpointing), and tracing time grows
    faster than the depth: a deeper model is traced at 1 and 2 layers and extrapolated."""
    if not families.of(cfg.model).transformers or transformer_block(cfg.model)[0].layers <= 2:
        return trace(cfg, device_type)
    one, two = (trace(with_value(cfg, "model.num_layers", n), device_type) for n in (1, 2))
    if one["activations_bytes"] is None or two["activations_bytes"] is None:
        return one if one["activations_bytes"] is None else two
    layers = transformer_block(cfg.model)[0].layers

    def extrapolated(key: str) -> int:
        return one[key] + (layers - 1) * (two[key] - one[key])

    return {
        "activations_bytes": extrapolated("activations_bytes"),
        "forward_peak_bytes": extrapolated("forward_peak_bytes"),
        "formula": f"{one['formula']}, at 1 and 2 layers, extrapolated to {layers}",
    }


def trace(config: BenchConfig, device_type: str = "cpu") -> dict:
    """One traced step of `config`, run on `device_type`."""
    cfg, how = traced_config(config)
    if cfg is None:
        return {"activations_bytes": None, "formula": how}
    device = torch.device("cpu")
    on_cuda = device_type == "cuda"
    if on_cuda:
        how += ", with CUDA's op choices (fused dropout's one-byte masks, autocast's fp32 ops)"
    try:
        # peft moves its adapters with Module.to(), which swaps a fake parameter in place and fails there
        with (
            FakeTensorMode(allow_non_fake_inputs=True),
            mock.patch.object(torch.nn.Module, "to", _to_by_assignment),
            cuda_op_choices() if on_cuda else contextlib.nullcontext(),
        ):
            torch.manual_seed(cfg.workload.seed)
            workload = Workload(cfg, build_trainable(cfg, device), device)
            if workload.scaler:  # its scale and growth tracker (8 bytes) live from the first step on, untracked
                workload.scaler.scale(torch.ones((), device=device))
            tracker = CategoryPeakTracker()
            tracker.track_external(workload.model, workload.optimizer)
            with tracker:
                at_entry = snapshot(tracker, "current").get("Total", 0)
                loss = workload.forward_loss()
                end_of_forward = snapshot(tracker, "current").get(ACT, 0)
                # inside the forward, beyond what it keeps: the loss's temporaries, and under autocast the cast
                # weights it caches until the autocast region ends (freed there under checkpointing)
                forward_peak = snapshot(tracker, "peak").get("Total", 0) - at_entry
                workload.backward(loss)
                del loss
    except Exception as exc:  # a model or method the fake mode cannot run: say so, never a guess
        return {"activations_bytes": None, "formula": f"trace failed: {type(exc).__name__}: {str(exc)[:300]}"}
    return {
        "activations_bytes": max(end_of_forward, tracker.recompute_act_peak),
        "forward_peak_bytes": forward_peak,
        "formula": how,
    }
