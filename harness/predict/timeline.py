"""The step's peak as a timeline: the live set at each moment where the peak can fall, the largest of them, and which
moment it is. A training step does not hold every category at its own peak at once: gradients appear as activations
are freed, and the loss's backward, each layer's backward and the optimizer step make temporaries of their own.

Moments, in the order a step reaches them (harness/measure/workload.py's step; tests/test_peak_moments.py measures
each with torch's MemTracker on CPU):
- end of forward: parameters, buffers, optimizer state and what the forward keeps for backward;
- loss backward: the cross entropy's backward makes the gradient of its log-softmax output and of its input, two
  more t x V fp32 tensors beside the log-softmax it saved (for Llama 3, V = 128,256: 1 MiB per token); the mlp's
  MSE makes one t x width fp32 gradient;
- head backward: lm_head's input and weight gradients while every layer's activations are still alive;
- layers backward: the first decoder layer backward (the last layer; under checkpointing recomputed first), at its
  MLP, where the gated product's backward holds three t x ff tensors; and the last layer backward (the first
  layer), where every other gradient already exists;
- end of backward: every gradient, and the embedding's, made from the gradient that reaches it;
- optimizer step: every gradient and the optimizer's temporaries (torch's foreach AdamW: sqrt(exp_avg_sq) for every
  tensor; fused AdamW and bitsandbytes' 8-bit kernels update in place).
No torch here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from harness import families
from harness.config.rules import ADAPTER_METHODS, COMPUTE_BYTES, adapter_bytes, mlp_checkpoint_segments
from harness.predict.activations_hf import Block, head_bytes
from harness.predict.allocator import allocated_bytes
from harness.predict.parameters import (
    NF4_BLOCK,
    NF4_COMPUTE_BYTES,
    fused_adamw,
    lora_targets,
    parameter_storages,
    parameter_tensors,
    trainable_numels,
)

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

MOMENTS = (
    "end of forward",
    "loss backward",
    "head backward",
    "layers backward",
    "optimizer step",
)
LOSS_SEED_BYTES = 4  # backward() starts from a one-element fp32 gradient of the loss
LABEL_BYTES = 8  # int64 token ids
LOSS_BYTES = 8  # the loss and nll_loss's total weight, one fp32 scalar each, held until backward returns


def optimizer_temporaries(cfg: BenchConfig, device_type: str, alloc: Callable[[int], int]) -> int:
    """What the optimizer's step allocates beyond its state: torch's foreach AdamW takes sqrt(exp_avg_sq) of every
    tensor at once (torch/optim/adamw.py, _multi_tensor_adamw: torch._foreach_sqrt), one tensor per trainable
    tensor in its dtype; fused AdamW (torch._fused_adamw_), SGD without momentum and bitsandbytes' 8-bit update
    work in place."""
    if cfg.method.name in ("sgd", "adamw8bit") or fused_adamw(cfg, device_type):
        return 0
    trainable = trainable_numels(cfg)
    te = parameter_storages(cfg, trainable)[1]
    return sum(alloc(te * n) for n in trainable)


def dequantized_bytes(cfg: BenchConfig, numel: int, device_type: str, alloc: Callable[[int], int]) -> int:
    """QLoRA's 4-bit matmul computes its input gradient from the weight dequantized (bitsandbytes MatMul4Bit.backward:
    dequantize_4bit(B, state).to(grad_output.dtype)): the weight in the compute dtype, its copy in the gradient's
    dtype where they differ, and the nested absmax dequantized to fp32 first, one per 64 weights."""
    if cfg.method.name != "qlora" or device_type != "cuda":
        # bitsandbytes' CPU backend computes the gradient through its own kernels: measured on CPU, the llama-like
        # moment holds no dequantized weight (tests/test_peak_moments.py)
        return 0
    grad_e = COMPUTE_BYTES[cfg.precision.name]
    copy = alloc(numel * grad_e) if grad_e != NF4_COMPUTE_BYTES else 0
    return alloc(numel * NF4_COMPUTE_BYTES) + copy + alloc(math.ceil(numel / NF4_BLOCK) * 4)


def buffer_bytes(cfg: BenchConfig, alloc: Callable[[int], int]) -> int:
    """A decoder's buffers: the rotary embedding's inverse frequencies (head_dim / 2, fp32: transformers keeps them
    in fp32 whatever the model's dtype), twice: inv_freq and original_inv_freq; GPT-2 (learned positions) and the mlp have none."""
    decoder = families.of(cfg.model).block(cfg.model)
    if decoder is None or decoder[0].style == "gpt2":
        return 0
    return 2 * alloc(decoder[0].head_dim // 2 * 4)


def trainable_where(cfg: BenchConfig, where: Callable, alloc: Callable[[int], int]) -> int:
    """Gradient bytes of the trainable tensors `where(tensor)` selects (full training: every tensor; adapters:
    the LoRA pairs of the selected linears)."""
    tensors = parameter_tensors(cfg)
    e = parameter_storages(cfg, trainable_numels(cfg))[1]
    if cfg.method.name not in ADAPTER_METHODS:
        return sum(alloc(e * t.numel) for t in tensors if where(t))
    targets, r = set(lora_targets(cfg)), cfg.method.r
    return sum(
        alloc(e * r * t.linear_in) + alloc(e * r * t.linear_out)
        for t in tensors
        if t.name in targets and t.linear_in and where(t)
    )


def decoder_moments(cfg: BenchConfig, act: dict, fixed: dict, alloc: Callable[[int], int]) -> dict:
    """The moments of a transformers causal LM (`fixed`: state, gradients and optimizer temporaries in bytes)."""
    block, _, _ = families.of(cfg.model).block(cfg.model)
    k: Block = block
    b, s = cfg.workload.batch_size, cfg.workload.seq_len
    t, e, h, ff, vocab = b * s, COMPUTE_BYTES[cfg.precision.name], k.hidden, k.ff, k.vocab
    full = cfg.method.name not in ADAPTER_METHODS
    end_of_forward = act.get("end_of_forward_bytes", act["activations_bytes"])
    state, grads = fixed["state"], fixed["grads"]
    log_softmax = alloc(t * vocab * 4)
    # nll_loss's backward has released the shifted labels when log_softmax's backward runs
    loss = state + end_of_forward - alloc(t * LABEL_BYTES) + 2 * log_softmax
    softcap = alloc(t * vocab * e) if k.final_softcap else 0
    head_weight = trainable_where(cfg, lambda x: x.name == "lm_head", alloc) if full else 0
    if full and not any(x.name == "lm_head" for x in parameter_tensors(cfg)):  # tied: the embedding's gradient
        head_weight = trainable_where(cfg, lambda x: x.name == "embed_tokens", alloc)
    head = (
        state
        + end_of_forward
        - alloc(t * LABEL_BYTES)
        - log_softmax
        - softcap
        + alloc(t * vocab * e)
        + alloc(t * h * e)
        + head_weight
    )
    # what the head saved, but the loss (held by the caller until backward returns); a frozen base's final norm
    # saves no normalised input, and a frozen lm_head not its input
    saved_by_head = head_bytes(k, b, s, e, "cpu") - LOSS_BYTES - (0 if full else 2 * t * h * e)
    layer_acts = end_of_forward - saved_by_head
    head_grads = head_weight + trainable_where(cfg, lambda x: not x.in_layer and x.name == "norm", alloc)
    # the final RMSNorm's backward, in fp32: its fp32 input and five t x h fp32 temporaries
    norm = state + layer_acts + head_grads + 6 * alloc(t * h * 4)
    # the first layer's MLP: the gated product's backward holds the residual's gradient and three t x ff tensors,
    # once down_proj's input (and its adapter's r-wide input) are released
    product, per_layer_grads = alloc(t * ff * e), trainable_where(cfg, lambda x: x.in_layer, alloc) // k.layers
    down = trainable_where(cfg, lambda x: x.name in ("down_proj", "c_proj") and x.in_layer, alloc) // k.layers
    adapter_input = 0 if full else alloc(t * cfg.method.r * adapter_bytes(cfg.precision.name))
    mlp_backward = alloc(t * h * e) + 2 * product + down - adapter_input
    recompute = act.get("recompute_bytes")
    if recompute is not None:
        # the recomputed layer and the stored inputs, beside the loss the caller holds
        top = state + recompute + alloc(LOSS_BYTES) + head_grads + mlp_backward
        per_layer_acts = alloc(t * h * e)  # what is left of a layer once its backward is done: its input
    else:
        top = state + layer_acts + head_grads + mlp_backward
        per_layer_acts = layer_acts // k.layers
    # QLoRA: down_proj's input gradient from its dequantized weight, before the gated product is released
    dequantized = state + (recompute or layer_acts) + head_grads + alloc(t * h * e) + alloc(t * ff * e)
    top = (
        max(top, dequantized + dequantized_bytes(cfg, ff * h, fixed["device_type"], alloc))
        if cfg.method.name == "qlora"
        else top
    )
    # the last layer backward: one layer's activations left of the layers', every other layer's gradients made
    bottom = top - (k.layers - 1) * (per_layer_acts - per_layer_grads)
    # the end of the backward: every gradient (the embedding's made from the gradient that reaches it)
    end = state + grads + alloc(t * h * e) if full else 0
    out = {"end of forward": state + end_of_forward, "loss backward": loss, "head backward": head}
    out["layers backward"] = max(norm, top, bottom, end)
    out["optimizer step"] = state + grads + fixed["optimizer_temporaries"]
    return out


def mlp_moments(cfg: BenchConfig, act: dict, fixed: dict, alloc: Callable[[int], int]) -> dict:
    """The mlp's moments: its input (held by the caller, counted from its first view), the MSE's fp32 input (alive
    until the caller drops the loss) and its fp32 gradient; each Linear's backward holds the output gradient, the
    input gradient (the base's and the adapter's; none in the first layer, whose input needs none) and the weight
    (or adapter) gradients, once the layer's ReLU output and its adapter's r-wide input are released."""
    t, w, depth = cfg.workload.batch_size * cfg.workload.seq_len, cfg.model.width, cfg.model.depth
    unit = alloc(t * w * COMPUTE_BYTES[cfg.precision.name])
    adapters = cfg.method.name in ADAPTER_METHODS
    ae = adapter_bytes(cfg.precision.name)
    adapter_input = alloc(t * cfg.method.r * ae) if adapters else 0
    input_grad = unit + (alloc(t * w * ae) if adapters else 0)
    state, grads = fixed["state"], fixed["grads"]
    end_of_forward = act.get("end_of_forward_bytes", act["activations_bytes"])
    seed, mse_input = alloc(LOSS_SEED_BYTES), alloc(t * w * 4)
    layer_grads = grads // depth

    def linear_backward(j: int) -> int:
        """Layer j's Linear backward (j = depth - 1 first): the input, the MSE's input, the ReLU outputs and adapter
        inputs of the layers below, the gradients of the layers above and of this one, its output gradient, and its
        input gradient but in the first layer."""
        below = j * (unit + adapter_input)
        made = (depth - j) * layer_grads
        return state + seed + unit + mse_input + below + made + unit + (input_grad if j else 0)

    # the moment is linear in j between the top and the second layer; the first makes no input gradient
    layers = max(linear_backward(j) for j in {depth - 1, min(1, depth - 1), 0})
    if cfg.method.name == "qlora":  # the top layer's input gradient from its dequantized weight
        layers = max(
            layers, linear_backward(depth - 1) - input_grad + dequantized_bytes(cfg, w * w, fixed["device_type"], alloc)
        )
    if cfg.checkpointing.enabled:  # the last segment is kept, the others recomputed: its top layer, then the first
        first_segment = depth // min(mlp_checkpoint_segments(depth, cfg.checkpointing.segments), depth)
        top = state + seed + end_of_forward - unit - adapter_input + unit + input_grad + layer_grads
        layers = max(top, *(linear_backward(j) for j in {min(1, first_segment - 1), 0}))
    if unit == mse_input:  # fp32: the top ReLU's backward, beside the MSE's gradient and everything saved
        layers = max(layers, state + seed + end_of_forward + mse_input + unit)
    return {
        "end of forward": state + end_of_forward,
        "loss backward": state + end_of_forward + seed + mse_input,
        "head backward": None,
        "layers backward": layers,
        "optimizer step": state + unit + grads + fixed["optimizer_temporaries"],
    }


def step_moments(cfg: BenchConfig, memory_allocated: dict, act: dict, device_type: str) -> dict:
    """{moments: {moment: bytes or None}, peak_step_bytes, peak_moment} for a step whose parameters, gradients and
    optimizer state are `memory_allocated` (analytic.predict's) and whose activations are `act` (analytic.activations'
    dict, or a traced figure: its activations_bytes stands for the end of the forward, an upper bound there)."""
    if act.get("activations_bytes") is None:
        return {"moments": dict.fromkeys(MOMENTS), "peak_step_bytes": None, "peak_moment": None}

    def alloc(n: int) -> int:
        return allocated_bytes(n, device_type)

    fixed = {
        "state": memory_allocated["params_bytes"] + buffer_bytes(cfg, alloc) + memory_allocated["optimizer_bytes"],
        "grads": memory_allocated["grads_bytes"],
        "optimizer_temporaries": optimizer_temporaries(cfg, device_type, alloc),
        "device_type": device_type,
    }
    counted = decoder_moments if families.of(cfg.model).transformers else mlp_moments
    moments = counted(cfg, act, fixed, alloc)
    peak_moment = max((m for m in MOMENTS if moments[m] is not None), key=lambda m: moments[m])
    return {"moments": moments, "peak_step_bytes": moments[peak_moment], "peak_moment": peak_moment}
