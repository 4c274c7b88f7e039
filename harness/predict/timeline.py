"""The step's peak as a timeline: the live set at each moment where the peak can fall, the largest of them, and which
moment it is. A training step does not hold every category at its own peak at once: gradients appear as activations
are freed, and the loss's backward, each layer's backward and the optimizer step make temporaries of their own.

Moments, in the order a step reaches them (harness/measure/workload.py's step; tests/test_peak_moments.py measures
each with torch's MemTracker on CPU):
- forward: the largest live set inside the forward, where a trace gives it (`forward_peak_bytes`): the loss's
  temporaries, and under autocast the 16-bit weight copies it caches for the whole region (aten's cached_cast),
  which checkpointing does not save but which live until the forward returns; a closed form's forward stays below
  the loss backward (tests/test_peak_moments.py);
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
Where gradients are kept between steps (workload.zero_grad=zeros: torch < 2.0's zero_grad, gradient accumulation),
every moment holds every gradient: a gradient the backward makes is a temporary that AccumulateGrad adds in place
(torch/csrc/autograd/functions/accumulate_grad.h), so each moment holds all of them plus the ones its op just made.
No torch here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from harness import families
from harness.config.rules import ADAPTER_METHODS, COMPUTE_BYTES, WEIGHT_BYTES, adapter_bytes, mlp_checkpoint_segments
from harness.families.hf_config import SEQUENCE_CLASSIFICATION
from harness.predict.activations_hf import (
    Block,
    gemma_norm_bytes,
    head_bytes,
    label_bytes,
    logits_shape,
    mask_bytes,
)
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
    "forward",
    "end of forward",
    "loss backward",
    "head backward",
    "layers backward",
    "optimizer step",
)
LOSS_SEED_BYTES = 4  # backward() starts from a one-element fp32 gradient of the loss
LOSS_BYTES = 8  # the loss and nll_loss's total weight, one fp32 scalar each, held until backward returns


def optimizer_temporaries(cfg: BenchConfig, device_type: str, alloc: Callable[[int], int]) -> int:
    """What the optimizer's step allocates beyond its state: torch's foreach AdamW takes sqrt(exp_avg_sq) of every
    tensor at once (torch/optim/adamw.py, _multi_tensor_adamw: torch._foreach_sqrt), one tensor per trainable
    tensor in its dtype; fused AdamW (torch._fused_adamw_), SGD without momentum and bitsandbytes' updates (8-bit
    and paged) work in place."""
    if cfg.method.name in ("sgd", "adamw8bit") or cfg.method.paged or fused_adamw(cfg, device_type):
        return 0
    trainable = trainable_numels(cfg)
    te = parameter_storages(cfg, trainable)[1]
    return sum(alloc(te * n) for n in trainable)


def dequantized_bytes(cfg: BenchConfig, numel: int, device_type: str, alloc: Callable[[int], int]) -> int:
    """QLoRA's 4-bit matmul computes its input gradient from the weight dequantized (bitsandbytes MatMul4Bit.backward:
    dequantize_4bit(B, state).to(grad_output.dtype)): the weight in the compute dtype, its copy in the gradient's
    dtype where they differ, and the nested absmax dequantized to fp32 first, one per 64 weights."""
    if cfg.method.name != "qlora":
        return 0
    if device_type != "cuda":
        # bitsandbytes' CPU kernel dequantizes to the dtype the weight was quantized from (a transformers load: the
        # bf16 checkpoint; the mlp: its own weights), the copy is in the compute dtype (Linear4bit casts its input
        # to it), and the fp32 absmax is released by the time grad_A is made (measured: tests/test_qlora_bf16.py)
        source = NF4_COMPUTE_BYTES if families.of(cfg.model).transformers else WEIGHT_BYTES[cfg.precision.name]
        copy = alloc(numel * NF4_COMPUTE_BYTES) if source != NF4_COMPUTE_BYTES else 0
        return alloc(numel * source) + copy
    grad_e = COMPUTE_BYTES[cfg.precision.name]
    copy = alloc(numel * grad_e) if grad_e != NF4_COMPUTE_BYTES else 0
    return alloc(numel * NF4_COMPUTE_BYTES) + copy + alloc(math.ceil(numel / NF4_BLOCK) * 4)


def buffer_bytes(cfg: BenchConfig, alloc: Callable[[int], int]) -> int:
    """A decoder's buffers: the rotary embedding's inverse frequencies (head_dim / 2 in fp32, whatever the model's
    dtype), twice: inv_freq and original_inv_freq; GPT-2 (learned positions) and the mlp have none."""
    decoder = families.of(cfg.model).block(cfg.model)
    if decoder is None or decoder[0].style == "gpt2":
        return 0
    scale = alloc(4) if decoder[0].style == "gemma" else 0  # gemma2's embed_scale: one fp32 scalar
    return 2 * alloc(decoder[0].head_dim // 2 * 4) + scale


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


EMBEDDINGS = ("embed_tokens", "wte", "word_embeddings")  # the input embedding's name, per block family's inventory


def decoder_gradients(cfg: BenchConfig, alloc: Callable[[int], int]) -> dict:
    """The gradients a decoder's backward makes by where it is: lm_head's weight (a tied lm_head's is the
    embedding's, made at the head and held until the embedding's own part arrives; a frozen base has none), the
    head's with the final norm's, one layer's, and one layer's MLP output projection (down_proj, GPT-2's c_proj).
    A sequence classifier's head weight is its classifier's. `held`: a tied head's part of the embedding's gradient,
    waiting in autograd's input buffer for the embedding's part; `embedding`: the input embedding's gradient."""
    k = families.of(cfg.model).block(cfg.model)[0]
    full = cfg.method.name not in ADAPTER_METHODS
    tied = not any(x.name == "lm_head" for x in parameter_tensors(cfg))
    names = EMBEDDINGS if tied else ("lm_head",)
    names = ("classifier",) if k.head == SEQUENCE_CLASSIFICATION else names
    weight = trainable_where(cfg, lambda x: x.name in names, alloc) if full else 0
    final_norm = trainable_where(cfg, lambda x: not x.in_layer and x.name in ("norm", "bias"), alloc) if full else 0
    down = trainable_where(cfg, lambda x: x.in_layer and x.linear_in == k.ff and x.name != "gate_up_proj", alloc)
    embedding = trainable_where(cfg, lambda x: x.name in EMBEDDINGS, alloc) if full else 0
    return {
        "head_weight": weight,
        "held": weight if tied and k.head != SEQUENCE_CLASSIFICATION else 0,
        "embedding": embedding,
        "head": weight + final_norm,
        "layer": trainable_where(cfg, lambda x: x.in_layer, alloc) // k.layers,
        "down": down // k.layers,
    }


def made(fixed: dict, before: int, fresh: int = 0) -> int:
    """Gradient bytes live at a moment of the backward: those made `before` it, or every gradient where they are
    kept between steps (zero-filled, accumulated into in place), and those its op has just made (`fresh`, stolen
    as .grad, or a temporary that AccumulateGrad adds to the kept one)."""
    return (fixed["grads"] if fixed["kept"] else before) + fresh


def fixed_parts(cfg: BenchConfig, memory_allocated: dict, device_type: str) -> dict:
    """What a step holds whatever its batch and sequence length: parameters, buffers and optimizer state
    (`state`), gradients, the optimizer's temporaries, and a decoder's gradients by where they are made."""

    def alloc(n: int) -> int:
        return allocated_bytes(n, device_type)

    fixed = {
        "state": memory_allocated["params_bytes"] + buffer_bytes(cfg, alloc) + memory_allocated["optimizer_bytes"],
        "grads": memory_allocated["grads_bytes"],
        "optimizer_temporaries": optimizer_temporaries(cfg, device_type, alloc),
        "device_type": device_type,
        "kept": cfg.workload.zero_grad == "zeros",
    }
    if families.of(cfg.model).transformers:
        fixed.update(decoder_gradients(cfg, alloc))
    return fixed


def saved_by_head(k: Block, cfg: BenchConfig, e: int, device_type: str) -> int:
    """What the head saved that its backward releases: the final norm's, the log-softmax, the labels (not the loss,
    held by the caller until backward returns; nor GPT-2's position ids and embedding dropout mask, released at
    the bottom). A frozen base's final norm saves no normalised input, and a frozen lm_head not its input."""
    b, s = cfg.workload.batch_size, cfg.workload.seq_len
    t = b * s
    out = head_bytes(k, b, s, e, device_type) - LOSS_BYTES
    if k.style == "bert":  # its head's count already holds what a frozen head does not save (traced: an estimate)
        return out
    if k.style == "gpt2":
        out -= s * 8 + (t * k.hidden * mask_bytes(e, device_type) if k.dropout else 0)
    return out - (0 if cfg.method.name not in ADAPTER_METHODS else 2 * t * k.hidden * e)


def released_before_mlp(k: Block, t: int, e: int, device_type: str) -> int:
    """What a layer's backward releases before its MLP's: gemma2's post-feed-forward norm, GPT-2's MLP dropout
    mask."""
    if k.style == "gemma":
        return gemma_norm_bytes(t, k.hidden, e, False)
    return t * k.hidden * mask_bytes(e, device_type) if (k.style == "gpt2" and k.dropout) else 0


def layer_moments(cfg: BenchConfig, k: Block, act: dict, fixed: dict, alloc: Callable[[int], int]) -> int:
    """The largest live set in the layers' backward: the final norm's backward (RMSNorm in fp32: its fp32 input
    and five t x h fp32 temporaries), the first layer's MLP (the gated product's backward holds the residual's
    gradient and three t x ff tensors once down_proj's input and its adapter's r-wide input are released; QLoRA:
    down_proj's input gradient from its dequantized weight), the last layer's (every other layer's gradients
    made), and the end of the backward (every gradient, the embedding's made from the gradient that reaches it)."""
    t, e = cfg.workload.batch_size * cfg.workload.seq_len, COMPUTE_BYTES[cfg.precision.name]
    h, ff, full = k.hidden, k.ff, cfg.method.name not in ADAPTER_METHODS
    state, grads = fixed["state"], fixed["grads"]
    layer_acts = end_of_forward(act) - saved_by_head(k, cfg, e, fixed["device_type"])
    head_grads = made(fixed, fixed["head"] - fixed["held"], fixed["held"])
    norm = state + layer_acts + head_grads + 6 * alloc(t * h * 4) if k.style not in ("gpt2", "bert") else 0
    product, per_layer_grads = alloc(t * ff * e), fixed["layer"]
    adapter_input = 0 if full else alloc(t * cfg.method.r * adapter_bytes(cfg.precision.name))
    released = released_before_mlp(k, t, e, fixed["device_type"])
    # down_proj's gradient is made before the product's backward: kept, AccumulateGrad has added it by then
    down = 0 if fixed["kept"] else fixed["down"]
    mlp_backward = alloc(t * h * e) + 2 * product + down - adapter_input - released
    recompute = act.get("recompute_bytes")
    recomputing = 0
    if recompute is not None:  # the recomputed layer and the stored inputs, beside the loss the caller holds
        # a frozen base's recomputation peaks inside an adapter's sum (activations_hf.frozen_checkpointed_parts),
        # with the layer's output gradient waiting; its backward starts from what the layer saved
        saved = act.get("recompute_saved_bytes", recompute) + act.get("recompute_temporary_bytes", 0)
        if "recompute_saved_bytes" in act:
            recomputing = state + recompute + act["recompute_temporary_bytes"] + alloc(LOSS_BYTES) + head_grads
            recomputing += alloc(t * h * e)
        first = saved + alloc(LOSS_BYTES)
        per_layer_acts = alloc(t * h * e)  # what is left of a layer once its backward is done: its input
    else:
        first, per_layer_acts = layer_acts, layer_acts // k.layers
    top = state + first + head_grads + mlp_backward
    if cfg.method.name == "qlora":
        dequantized = state + first + head_grads + alloc(t * h * e) + product
        top = max(top, dequantized + dequantized_bytes(cfg, ff * h, fixed["device_type"], alloc))
    bottom = top - (k.layers - 1) * (per_layer_acts - (0 if fixed["kept"] else per_layer_grads))
    # kept gradients: the embedding's is made beside them (with a tied head's part), then added in place
    fresh = fixed["embedding"] + fixed["held"] if fixed["kept"] else 0
    end = state + grads + fresh + alloc(t * h * e) if full else 0
    return max(norm, recomputing, top, bottom, end)


def input_leaf(cfg: BenchConfig, k: Block, alloc: Callable[[int], int]) -> int:
    """A frozen base under checkpointing: peft makes the embedding output require grad (enable_input_require_grads),
    a leaf that backward gives a gradient; both outlive the backward, into the optimizer step (measured on CPU)."""
    if cfg.method.name not in ADAPTER_METHODS or not cfg.checkpointing.enabled:
        return 0
    t = cfg.workload.batch_size * cfg.workload.seq_len
    return 2 * alloc(t * k.hidden * COMPUTE_BYTES[cfg.precision.name])


def decoder_moments(cfg: BenchConfig, act: dict, fixed: dict, alloc: Callable[[int], int]) -> dict:
    """The moments of a transformers causal LM (`fixed`: state, gradients and optimizer temporaries in bytes)."""
    k: Block = families.of(cfg.model).block(cfg.model)[0]
    t, e = cfg.workload.batch_size * cfg.workload.seq_len, COMPUTE_BYTES[cfg.precision.name]
    eof = end_of_forward(act)
    rows, width = logits_shape(k, cfg.workload.batch_size, cfg.workload.seq_len)
    state, labels = fixed["state"], alloc(label_bytes(k, t))
    log_softmax = alloc(rows * width * 4)
    softcap = alloc(rows * width * e) if k.final_softcap else 0
    # lm_head's (a classifier's) backward: the logits' gradient in the model's dtype, its input gradient and its
    # weight gradient, once log-softmax (and gemma2's soft-cap) released what they saved
    head = alloc(rows * width * e) + alloc(rows * k.hidden * e) - log_softmax - softcap
    before_backward = made(fixed, 0)  # the gradients live before the backward makes any: all of them, kept
    return {
        "end of forward": state + eof + before_backward,
        # nll_loss's backward has released the shifted labels when log_softmax's backward runs
        "loss backward": state + eof - labels + 2 * log_softmax + before_backward,
        "head backward": state + eof - labels + head + made(fixed, 0, fixed["head_weight"]),
        "layers backward": layer_moments(cfg, k, act, fixed, alloc),
        "optimizer step": state + fixed["grads"] + fixed["optimizer_temporaries"] + input_leaf(cfg, k, alloc),
    }


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
    eof = end_of_forward(act)
    seed, mse_input = alloc(LOSS_SEED_BYTES), alloc(t * w * 4)
    layer_grads = grads // depth
    # QLoRA: each layer's input gradient is made beside its weight dequantized (none in the first layer)
    dequantized = dequantized_bytes(cfg, w * w, fixed["device_type"], alloc)

    def linear_backward(j: int) -> int:
        """Layer j's Linear backward (j = depth - 1 first): the input, the MSE's input, the ReLU outputs and adapter
        inputs of the layers below, the gradients of the layers above and of this one, its output gradient, and its
        input gradient (with QLoRA's dequantized weight) but in the first layer."""
        below = j * (unit + adapter_input)
        # a Linear's weight gradients come with its input gradient. Kept adapter gradients are an upper bound: peft's
        # branch runs its backward first and adds them before the base's input gradient (CPU: +2.6% at width 64)
        grads_live = made(fixed, (depth - j - 1) * layer_grads, layer_grads)
        return state + seed + unit + mse_input + below + grads_live + unit + (input_grad + dequantized if j else 0)

    # the moment is linear in j between the top and the second layer; the first makes no input gradient
    layers = max(linear_backward(j) for j in {depth - 1, min(1, depth - 1), 0})
    if cfg.checkpointing.enabled:  # the last segment is kept, the others recomputed: its top layer, then the first
        first_segment = depth // min(mlp_checkpoint_segments(depth, cfg.checkpointing.segments), depth)
        top = state + seed + eof - unit - adapter_input + unit + input_grad + dequantized + made(fixed, 0, layer_grads)
        layers = max(top, *(linear_backward(j) for j in {min(1, first_segment - 1), 0}))
    before_backward = made(fixed, 0)  # the gradients live before the backward makes any: all of them, kept
    if unit == mse_input:  # fp32: the top ReLU's backward, beside the MSE's gradient and everything saved
        layers = max(layers, state + seed + eof + mse_input + unit + before_backward)
    return {
        "end of forward": state + eof + before_backward,
        "loss backward": state + eof + seed + mse_input + before_backward,
        "head backward": None,
        "layers backward": layers,
        "optimizer step": state + unit + grads + fixed["optimizer_temporaries"],
    }


def end_of_forward(act: dict) -> int:
    """What the forward leaves for backward: the closed form's figure at the end of the forward, else (a traced
    figure, the larger of the end of the forward and a recomputation) the activations' figure, an upper bound."""
    return act.get("end_of_forward_bytes", act["activations_bytes"])


def step_moments(cfg: BenchConfig, fixed: dict, act: dict) -> dict:
    """{moments: {moment: bytes or None}, peak_step_bytes, peak_moment} of a step that holds `fixed` (fixed_parts')
    and whose activations are `act` (analytic.activations' dict, or a traced figure)."""
    if act.get("activations_bytes") is None:
        return {"moments": dict.fromkeys(MOMENTS), "peak_step_bytes": None, "peak_moment": None}

    def alloc(n: int) -> int:
        return allocated_bytes(n, fixed["device_type"])

    counted = decoder_moments if families.of(cfg.model).transformers else mlp_moments
    moments = counted(cfg, act, fixed, alloc)
    inside = act.get("forward_peak_bytes")
    moments["forward"] = None if inside is None else fixed["state"] + made(fixed, 0) + inside
    peak_moment = max((m for m in MOMENTS if moments[m] is not None), key=lambda m: moments[m])
    return {"moments": moments, "peak_step_bytes": moments[peak_moment], "peak_moment": peak_moment}
