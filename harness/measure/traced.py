"""A traced prediction, where no closed form is derived: the real model and method run one training forward and
backward under FakeTensorMode (tensors with shapes and dtypes, no storage: nothing is allocated), with PyTorch's
MemTracker counting what it would hold, as the memory pass counts a real run (harness/measure/memory.py). It runs
on the CPU device type (autograd on a fake CUDA tensor needs a CUDA build); predicting a CUDA run, it makes the
choices CUDA's dispatcher makes where the CPU's hold other bytes (harness/measure/cuda_ops.py).

QLoRA cannot be traced (bitsandbytes quantizes real weights as they load); its activations are LoRA's on a model in
the dtype of the weights it does not quantize, fp32 (upcast variant) or bf16 (harness/predict/activations.py says
why; tests/test_hf_activations.py and tests/test_qlora_bf16.py measure it), so the trace runs that instead and says
so.

The same fake run, at full depth and over whole steps, gives the caching allocator's reserve (replayed_reserve):
every allocation and free it makes goes through the allocator's rules (harness/measure/allocation_log.py,
harness/predict/caching_allocator.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
from unittest import mock

import torch
import transformers.masking_utils as masking_utils
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import _MemRefType

from harness import families
from harness.config.groups import BenchConfig
from harness.measure.allocation_log import AllocationLog
from harness.measure.cuda_ops import cuda_op_choices
from harness.measure.methods import build_trainable
from harness.measure.trackers import CategoryPeakTracker, snapshot
from harness.measure.workload import Workload
from harness.predict.activations import transformer_block
from harness.predict.caching_allocator import CachingAllocator
from harness.predict.estimate import with_value
from harness.predict.parameters import fused_adamw

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


CUDA_CHOICES = ", with CUDA's op choices (fused dropout's one-byte masks, autocast's fp32 ops)"
CPU = torch.device("cpu")


@contextlib.contextmanager
def fake_cpu_run(device_type: str):
    """Where a traced run happens: FakeTensorMode on the CPU device type, with CUDA's op choices for a CUDA run."""
    # peft moves its adapters with Module.to(), which swaps a fake parameter in place and fails there. transformers
    # cannot read a fake tensor's position ids, so it takes them for packed sequences (find_packed_sequence_indices)
    # and builds a causal mask that each layer's attention saves; the workload's rows are one sequence each (no
    # attention mask, positions 0..s-1), where a real run finds none and SDPA runs is_causal, with no mask
    with (
        FakeTensorMode(allow_non_fake_inputs=True),
        mock.patch.object(torch.nn.Module, "to", _to_by_assignment),
        mock.patch.object(masking_utils, "find_packed_sequence_indices", lambda position_ids: None),
        cuda_op_choices() if device_type == "cuda" else contextlib.nullcontext(),
    ):
        yield


def _workload(cfg: BenchConfig) -> Workload:
    torch.manual_seed(cfg.workload.seed)
    return Workload(cfg, build_trainable(cfg, CPU), CPU)


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
    if device_type == "cuda":
        how += CUDA_CHOICES
    try:
        with fake_cpu_run(device_type):
            workload = _workload(cfg)
            if workload.scaler:  # its scale and growth tracker (8 bytes) live from the first step on, untracked
                workload.scaler.scale(torch.ones((), device=CPU))
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


REPLAYED_STEPS = (2, 4)  # at least two steps (the first makes the optimizer's state), at most four


def replayed_reserve(config: BenchConfig, device_type: str = "cuda", phase: str = "step") -> dict:
    """{reserved_peak_bytes, allocated_peak_bytes, steps, requests, formula}: the caching allocator's peak reserve
    (and its allocated peak) over a run of `config` on `device_type`, its allocations replayed through the
    allocator's rules (harness/predict/caching_allocator.py) from a traced run at full depth: the model built, then
    training steps (`phase` "step": until a step reserves no new segment) or one inference forward ("fwd_infer").
    None with the reason where the traced run stands another method in (its state or weights differ), or fails."""
    if config.parallel.name != "none":
        return {"reserved_peak_bytes": None, "formula": "no replay: a multi-rank run (the replay runs one process)"}
    if config.method.paged:  # on the CPU device type bitsandbytes makes ordinary tensors of it, which would count
        why = "a paged optimizer's state is in CUDA unified memory, outside the caching allocator"
        return {"reserved_peak_bytes": None, "formula": f"no replay: {why}"}
    cfg, how = traced_config(config)
    if cfg is None or cfg.method.name != config.method.name:
        return {"reserved_peak_bytes": None, "formula": f"no replay: {how}"}
    # the optimizer the run on `device_type` builds (fused AdamW on CUDA), not the CPU device type's
    cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, fused=fused_adamw(config, device_type)))
    allocator, steps, settled = CachingAllocator(), 0, phase == "fwd_infer"
    try:
        with fake_cpu_run(device_type), AllocationLog(allocator) as log:
            workload = _workload(cfg)
            if phase == "fwd_infer":
                workload.fwd_infer()
            while phase == "step" and steps < REPLAYED_STEPS[1]:
                before, steps = allocator.segments, steps + 1
                workload.step()
                settled = allocator.segments == before
                if steps >= REPLAYED_STEPS[0] and settled:
                    break
    except Exception as exc:  # a model or method the fake mode cannot run: say so, never a guess
        return {"reserved_peak_bytes": None, "formula": f"replay failed: {type(exc).__name__}: {str(exc)[:300]}"}
    what = f"{steps} training steps" if phase == "step" else "one inference forward"
    if not settled:  # said, not hidden: a reserve that still grew in the last step replayed is a lower bound
        what += f" (the reserve still grew in step {steps}: a lower bound)"
    return {
        "reserved_peak_bytes": allocator.peak_reserved_bytes,
        "allocated_peak_bytes": allocator.peak_allocated_bytes,
        "steps": steps,
        "requests": log.requests,
        "formula": (
            f"the caching allocator's rules replayed over {what} ({log.requests} allocations, "
            f"{allocator.segments} segments), traced at full depth{CUDA_CHOICES if device_type == 'cuda' else ''}"
        ),
    }
