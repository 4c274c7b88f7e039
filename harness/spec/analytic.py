"""The analytic model: what a configuration should cost, from its shapes alone (no torch, no measurement).

Plain functions of the resolved config (a dict, as stored in a record's `config`). Each prediction says which
formula it used, so a disagreement with the measurement points at a term. Sources: ../shared/REFERENCES.md
(Kaplan 2020 for 6N, Korthikanti 2022 for the activation method, Dettmers 2021/2023 for 8-bit state and NF4,
Hu 2021 for LoRA), and, for what autograd keeps alive, the saved tensors of each op as PyTorch defines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.spec.allocator import allocated_bytes
from harness.spec.shapes import (ADAPTER_METHODS, COMPUTE_BYTES, LLAMA_DEFAULT_TARGETS, WEIGHT_BYTES, adapter_bytes,
                                 default_targets, llama_shape, mlp_checkpoint_segments)


# bitsandbytes 8-bit optimizers: block-wise quantization in blocks of 256, one fp32 absmax per block and state,
# and two 256-entry fp32 quantization maps per tensor (Dettmers et al. 2021; bitsandbytes Optimizer8bit).
BNB8_BLOCK = 256
BNB8_QMAP_BYTES = 2 * 256 * 4
# NF4 with double quantization (QLoRA §3): 4-bit codes, one 8-bit absmax per 64 weights, one fp32 absmax per
# 256 of those, plus per-tensor constants (a 16-entry fp32 NF4 code, a 256-entry fp32 code for the absmax
# and its fp32 offset).
NF4_BLOCK, NF4_NESTED_BLOCK = 64, 256
NF4_TENSOR_CONSTANTS = (16 * 4, 256 * 4, 4)  # bytes of each per-tensor constant, one storage each


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor of the model as the config defines it."""

    name: str  # module kind: q_proj, linear, embed_tokens, norm, lm_head, bias ...
    numel: int
    linear_in: int = 0  # for weights of linear layers: (in, out), which LoRA adapts
    linear_out: int = 0


def parameter_tensors(config: dict) -> list[Tensor]:
    model = config["model"]
    if model["name"] == "mlp":
        w, out = model["width"], []
        for _ in range(model["depth"]):
            if model["norm"]:
                out += [Tensor("norm", w), Tensor("norm", w)]
            out.append(Tensor("linear", w * w, w, w))
            if model["bias"]:
                out.append(Tensor("bias", w))
        return out
    s = llama_shape(model)
    h, ff, nh, kv = s["hidden_size"], s["intermediate_size"], s["num_heads"], s["num_kv_heads"]
    hd = h // nh
    out = [Tensor("embed_tokens", s["vocab_size"] * h)]
    for _ in range(s["num_layers"]):
        out += [Tensor("q_proj", h * nh * hd, h, nh * hd), Tensor("k_proj", h * kv * hd, h, kv * hd),
                Tensor("v_proj", h * kv * hd, h, kv * hd), Tensor("o_proj", nh * hd * h, nh * hd, h),
                Tensor("gate_proj", h * ff, h, ff), Tensor("up_proj", h * ff, h, ff), Tensor("down_proj", ff * h, ff, h),
                Tensor("norm", h), Tensor("norm", h)]
    out.append(Tensor("norm", h))
    if not s["tie_word_embeddings"]:
        out.append(Tensor("lm_head", s["vocab_size"] * h, h, s["vocab_size"]))
    return out


def lora_targets(config: dict) -> tuple[str, ...]:
    method = config["method"]
    if method.get("target_modules") is not None:
        return tuple(method["target_modules"])
    return default_targets(config["model"]["name"])


def adapter_numels(config: dict) -> list[int]:
    """LoRA's A (r x d_in) and B (d_out x r) of every adapted linear, in order (Hu et al. 2021)."""
    r, targets = config["method"]["r"], lora_targets(config)
    return [n for t in parameter_tensors(config) if t.name in targets and t.linear_in
            for n in (r * t.linear_in, r * t.linear_out)]


def lora_parameter_count(config: dict) -> int:
    """r·(d_in + d_out) per adapted linear."""
    return sum(adapter_numels(config))


def nf4_storages(numel: int) -> list[int]:
    """The storages of one NF4 weight with double quantization: 4-bit codes, 8-bit absmax, nested fp32
    absmax, then the per-tensor constants."""
    blocks = math.ceil(numel / NF4_BLOCK)
    return [math.ceil(numel / 2), blocks, 4 * math.ceil(blocks / NF4_NESTED_BLOCK), *NF4_TENSOR_CONSTANTS]


def nf4_bytes(numel: int) -> int:
    return sum(nf4_storages(numel))


def adamw8bit_storages(numel: int, min_8bit_size: int) -> list[int]:
    """Two states per tensor: uint8 with a block absmax each, or fp32 below min_8bit_size (the quantization
    maps are shared by the whole optimizer: see storages)."""
    if numel < min_8bit_size:
        return [4 * numel, 4 * numel]
    absmax = 4 * math.ceil(numel / BNB8_BLOCK)
    return [numel, numel, absmax, absmax]


def adamw8bit_state_bytes(numel: int, min_8bit_size: int) -> int:
    return sum(adamw8bit_storages(numel, min_8bit_size))


@dataclass(frozen=True)
class Storage:
    """One storage of model state: which category it belongs to, its bytes, and whether it lives on the host
    (torch's foreach AdamW keeps its `step` counters on the CPU; fused AdamW keeps them on the device)."""

    category: str  # params_bytes | grads_bytes | optimizer_bytes
    nbytes: int
    on_host: bool = False


def fused_adamw(config: dict, device_type: str) -> bool:
    """The harness's rule (harness/measure/methods.py): method.fused, else fused on CUDA and foreach elsewhere."""
    fused = config["method"].get("fused")
    return fused if fused is not None else device_type == "cuda"


def trainable_numels(config: dict) -> list[int]:
    """Element count of each trainable tensor: every parameter, or LoRA's A (r x d_in) and B (d_out x r) per
    adapted linear."""
    if config["method"]["name"] in ADAPTER_METHODS:
        return adapter_numels(config)
    return [t.numel for t in parameter_tensors(config)]


def storages(config: dict, device_type: str = "cpu") -> list[Storage]:
    """Every storage of parameters, gradients and optimizer state the config implies, one entry each: the
    logical bytes are their sum, what the allocator holds the sum of each rounded (harness/spec/allocator.py)."""
    method, precision = config["method"]["name"], config["precision"]["name"]
    tensors = parameter_tensors(config)
    trainable = trainable_numels(config)
    e = WEIGHT_BYTES[precision]
    out: list[Storage] = []
    if method == "qlora":
        # bitsandbytes quantizes every linear but lm_head; prepare_model_for_kbit_training upcasts the rest to fp32
        for t in tensors:
            quantized = t.linear_in and t.name != "lm_head"
            sizes = nf4_storages(t.numel) if quantized else [4 * t.numel]
            out += [Storage("params_bytes", n) for n in sizes]
        adapter_e = 4
    else:
        out += [Storage("params_bytes", e * t.numel) for t in tensors]
        adapter_e = adapter_bytes(precision)
    if method in ADAPTER_METHODS:
        out += [Storage("params_bytes", adapter_e * n) for n in trainable]
        te = adapter_e
    else:
        te = e
    out += [Storage("grads_bytes", te * n) for n in trainable]
    if method == "adamw8bit":
        minimum = config["method"]["min_8bit_size"]
        out += [Storage("optimizer_bytes", b) for n in trainable for b in adamw8bit_storages(n, minimum)]
        if any(n >= minimum for n in trainable):
            # the two quantization maps are one pair of tensors shared by every 8-bit state of the optimizer
            out += [Storage("optimizer_bytes", BNB8_QMAP_BYTES // 2)] * 2
    elif method != "sgd":
        on_host = not fused_adamw(config, device_type)
        for n in trainable:  # exp_avg, exp_avg_sq, and a 4-byte float32 step per tensor
            out += [Storage("optimizer_bytes", te * n), Storage("optimizer_bytes", te * n),
                    Storage("optimizer_bytes", 4, on_host=on_host)]
    return out


MEMORY_CATEGORIES = ("params_bytes", "grads_bytes", "optimizer_bytes")


def memory(config: dict, device_type: str = "cpu") -> dict:
    """Predicted params, gradients and optimizer state bytes (activations: see activation_bytes): the logical
    figures, and under `allocated` what the device's allocator holds for them (equal on a CPU)."""
    listed = storages(config, device_type)
    out = {cat: sum(s.nbytes for s in listed if s.category == cat) for cat in MEMORY_CATEGORIES}
    out["allocated"] = {cat: sum(allocated_bytes(s.nbytes, "cpu" if s.on_host else device_type)
                                 for s in listed if s.category == cat) for cat in MEMORY_CATEGORIES}
    out.update({"trainable_params": sum(trainable_numels(config)),
                "total_params": sum(t.numel for t in parameter_tensors(config))})
    return out


def checkpoint_segments(config: dict) -> int:
    return mlp_checkpoint_segments(config["model"]["depth"], config["checkpointing"].get("segments"))


def mlp_activation_bytes(config: dict) -> dict:
    """What autograd holds for backward in the default mlp (Linear + ReLU, no norm, no residual).

    Without checkpointing: each ReLU output (which the next Linear also saves: one storage), the network
    input (saved by the first Linear for its weight gradient, or by the first LoRA A), LoRA's r-wide
    intermediate per adapted layer, and the fp32 copy of the output that the MSE loss keeps.
    With checkpoint_sequential in k segments (the last one not checkpointed): at the end of the forward, the
    k-1 checkpointed segments' inputs, the last segment's own activations and input, and the loss copy; while
    a segment is recomputed in backward, the stored inputs plus that segment's activations.
    """
    model, method = config["model"], config["method"]["name"]
    if model["activation"] != "relu" or model["norm"] or model["residual"]:
        return {"activations_bytes": None, "formula": "not modelled: only the default Linear+ReLU mlp is"}
    w, depth = model["width"], model["depth"]
    tokens = config["workload"]["batch_size"] * config["workload"]["seq_len"]
    e = COMPUTE_BYTES[config["precision"]["name"]]
    unit = tokens * w * e
    per_layer = unit
    if method in ADAPTER_METHODS:
        adapter_e = adapter_bytes(config["precision"]["name"])
        per_layer += tokens * config["method"]["r"] * adapter_e
    # MSE on y.float(): the fp32 difference, plus the fp32 copy of y when the model is not fp32 (in fp32 the
    # copy is the last ReLU output itself)
    loss = tokens * w * 4 + (tokens * w * 4 if e != 4 else 0)
    if config["precision"]["name"].startswith("amp"):
        if method in ADAPTER_METHODS or config["checkpointing"]["enabled"]:
            return {"activations_bytes": None, "formula": "not modelled: autocast with adapters or checkpointing"}
        # autocast keeps fp32 weights and saves the 16-bit copies it makes for backward: every layer's
        # weight copy except the first layer's (its input needs no gradient), and the input's cast
        return {"activations_bytes": depth * unit + unit + (depth - 1) * w * w * e + loss,
                "formula": "autocast: depth x ReLU output + input cast + (depth-1) 16-bit weight copies + loss"}
    if not config["checkpointing"]["enabled"]:
        return {"activations_bytes": depth * per_layer + unit + loss,
                "formula": "depth x (ReLU output [+ LoRA r-wide]) + input + fp32 loss copy"}
    k = min(checkpoint_segments(config), depth)
    size = depth // k
    last = depth - size * (k - 1)
    end_of_forward = (k - 1) * unit + last * per_layer + unit + loss
    recompute = (k - 1) * unit + size * per_layer
    return {"activations_bytes": max(end_of_forward, recompute),
            "formula": f"checkpoint_sequential, {k} segments: max(end of forward, recompute of one segment)"}


def _rmsnorm_bytes(t: int, h: int, e: int) -> int:
    """HF LlamaRMSNorm: x.float() (the input itself when fp32), pow/mean/rsqrt (fp32 rsqrt: 1 per token),
    x * rsqrt cast back to the model dtype, then weight * that (saved: the normalised tensor; its output is
    what the next linears save)."""
    return t * h * 4 + t * 4 + t * h * e + t * h * e


def llama_layer_activation_bytes(config: dict, attention_kernel: str | None = None) -> int:
    """One decoder layer (RMSNorm, attention, RMSNorm, SwiGLU), derived the way Korthikanti et al. 2022 count
    a GPT layer, from what each op saves for backward:

    - two RMSNorms (above);
    - SDPA with a fused kernel (flash, efficient, cudnn; `attention_kernel` None assumes one): rotated q,
      rotated k and v at their own head counts (GQA is passed through), the output (which the o_proj reads
      in place) and an fp32 logsumexp per head and token;
    - SDPA's math kernel (`_scaled_dot_product_attention_math`, which SDPA falls back to when no fused
      kernel takes the inputs): q scaled, k repeated to every query head and scaled, v repeated, all upcast
      to fp32 from a 16-bit model, and the fp32 softmax (s x s per head), then the o_proj input;
    - eager: q, k and v repeated to every query head, the fp32 softmax (s x s per head; plus its 16-bit cast
      in a 16-bit model) and the o_proj input (a contiguous copy of the attention output);
    - SwiGLU: gate, SiLU(gate), up and their product: 4 x d_ff per token.
    """
    s = llama_shape(config["model"])
    h, ff, nh, kv = s["hidden_size"], s["intermediate_size"], s["num_heads"], s["num_kv_heads"]
    hd = h // nh
    b, seq = config["workload"]["batch_size"], config["workload"]["seq_len"]
    t = b * seq
    e = COMPUTE_BYTES[config["precision"]["name"]]
    if config["model"]["attn_implementation"] == "eager":
        attention = 3 * t * h * e + b * nh * seq * seq * (4 + (e if e != 4 else 0)) + t * h * e
    elif attention_kernel == "math":
        attention = 3 * t * h * 4 + b * nh * seq * seq * 4 + t * h * e
    else:
        attention = t * h * e + 2 * t * kv * hd * e + t * h * e + b * nh * seq * 4
    return 2 * _rmsnorm_bytes(t, h, e) + attention + 4 * t * ff * e


def llama_activation_bytes(config: dict, attention_kernel: str | None = None) -> dict:
    """Layers, plus the head: final RMSNorm, the fp32 log-softmax over the vocabulary, the shifted int64
    labels and an 8-byte scalar of the loss; plus the rotary cos/sin (1 x s x head_dim each, shared)."""
    s = llama_shape(config["model"])
    b, seq = config["workload"]["batch_size"], config["workload"]["seq_len"]
    t = b * seq
    e = COMPUTE_BYTES[config["precision"]["name"]]
    h, layers = s["hidden_size"], s["num_layers"]
    layer = llama_layer_activation_bytes(config, attention_kernel)
    head = _rmsnorm_bytes(t, h, e) + t * s["vocab_size"] * 4 + t * 8 + 8
    rotary = 2 * seq * (h // s["num_heads"]) * e
    if not config["checkpointing"]["enabled"]:
        return {"activations_bytes": layers * layer + head + rotary,
                "formula": "layers x (2 RMSNorm + attention + SwiGLU) + final norm + fp32 log-softmax + labels"}
    stored = layers * t * h * e
    # while a layer is recomputed, its stored input is also its first norm's input: one storage in fp32
    recompute = stored + layer - (t * h * 4 if e == 4 else 0) + rotary
    return {"activations_bytes": max(stored + head + rotary, recompute),
            "formula": "checkpointing per decoder layer: layer inputs + max(head, one recomputed layer)"}


def llama_lora_activation_bytes(config: dict, attention_kernel: str | None = None) -> dict:
    """LoRA on every linear of the decoder (the default targets), no checkpointing: full training's count,
    less what frozen weights make unnecessary, plus the adapters' own:

    - every RMSNorm weight is frozen: its normalised input is not saved (-t·h·e per norm, 2 per layer + 1);
    - lm_head is frozen: the final norm's output is not saved (-t·h·e);
    - the embedding is frozen, so the first layer's input needs no gradient: its first norm saves neither
      the input nor the rsqrt (-(t·h·4 + t·4));
    - each adapted linear's A output is saved by B: +t·r per adapter, in the adapter dtype.
    The frozen linears' own inputs are still saved, by the LoRA A beside them.
    """
    full = llama_activation_bytes(config, attention_kernel)
    s = llama_shape(config["model"])
    t = config["workload"]["batch_size"] * config["workload"]["seq_len"]
    e = COMPUTE_BYTES[config["precision"]["name"]]
    h, layers, r = s["hidden_size"], s["num_layers"], config["method"]["r"]
    adapter_e = adapter_bytes(config["precision"]["name"])
    adapted = sum(1 for t_ in parameter_tensors(config) if t_.name in lora_targets(config) and t_.linear_in)
    frozen = (2 * layers + 1) * t * h * e + t * h * e + t * h * 4 + t * 4
    return {"activations_bytes": full["activations_bytes"] - frozen + adapted * t * r * adapter_e,
            "formula": "full training's count - frozen norms, head and first-layer input + t·r per adapter"}


def activations(config: dict, attention_kernel: str | None = None) -> dict:
    """What the training forward holds for backward; `attention_kernel` is the SDPA kernel that ran (the
    record's `resolved.attention_kernel.fwd_train`), None where it is not known (a fused one is assumed)."""
    if config["model"]["name"] == "mlp":
        return mlp_activation_bytes(config)
    if config["precision"]["name"].startswith("amp"):
        # autocast saves 16-bit copies of weights and fp32 norms beside 16-bit matmuls: derived for the mlp only
        return {"activations_bytes": None, "formula": "not modelled: llama under autocast"}
    method = config["method"]
    if method["name"] == "lora" and not config["checkpointing"]["enabled"] and (
            method.get("target_modules") is None or set(method["target_modules"]) == set(LLAMA_DEFAULT_TARGETS)):
        out = llama_lora_activation_bytes(config, attention_kernel)
    elif method["name"] in ADAPTER_METHODS:
        # With checkpointing peft makes the embedding output require grad; other target sets change which
        # frozen linears save their inputs; QLoRA's preparation upcasts to fp32: not derived yet.
        return {"activations_bytes": None, "formula": "not modelled: llama with a frozen base, beyond LoRA on "
                                                       "every linear without checkpointing"}
    elif attention_kernel == "math" and config["checkpointing"]["enabled"]:
        # the recompute's peak holds the math kernel's transient fp32 upcasts and s x s scores: not derived
        return {"activations_bytes": None, "formula": "not modelled: SDPA's math kernel under checkpointing"}
    else:
        out = llama_activation_bytes(config, attention_kernel)
    if config["model"]["attn_implementation"] == "sdpa":
        kernel = attention_kernel or "a fused kernel (assumed: the kernel that ran was not recorded)"
        out["formula"] += f"; SDPA {kernel}"
    return out


def activation_bytes(config: dict, attention_kernel: str | None = None) -> int | None:
    return activations(config, attention_kernel)["activations_bytes"]


def flop_ratio(config: dict) -> dict:
    """FLOPs of forward+backward over forward, as FlopCounterMode counts them (matmuls and attention).

    Full training: backward = 2 x forward (input and weight gradients) for every matmul whose input needs a
    gradient; the mlp's first layer has no input gradient, hence 3 - 1/depth. Llama's first matmuls read the
    embedding output, which needs a gradient for the embedding table, so 3 exactly (Kaplan's 6N/2N).
    Checkpointing adds the recomputed forwards: +1 forward of every checkpointed layer (Narayanan et al.).
    """
    method = config["method"]["name"]
    if method in ADAPTER_METHODS:
        return {"flop_ratio": None, "formula": "not modelled: adapter terms (frozen base: about 2 x forward)"}
    model = config["model"]
    if model["name"] == "mlp":
        depth = model["depth"]
        ratio = 3 - 1 / depth
        if config["checkpointing"]["enabled"]:
            k = min(checkpoint_segments(config), depth)
            ratio += (k - 1) * (depth // k) / depth
        return {"flop_ratio": ratio, "formula": "3 - 1/depth (+ recomputed layers / depth)"}
    s = llama_shape(model)
    b, seq = config["workload"]["batch_size"], config["workload"]["seq_len"]
    t = b * seq
    h, ff, nh, kv = s["hidden_size"], s["intermediate_size"], s["num_heads"], s["num_kv_heads"]
    hd = h // nh
    linear = 2 * t * (h * nh * hd + 2 * h * kv * hd + nh * hd * h + 3 * h * ff)
    attention = 2 * 2 * b * nh * seq * seq * hd  # q k^T and probs v, every s x s entry (non-causal count)
    layer = linear + attention
    head = 2 * t * h * s["vocab_size"]
    forward = s["num_layers"] * layer + head
    backward = 2 * forward
    if config["checkpointing"]["enabled"]:
        backward += s["num_layers"] * layer
    return {"flop_ratio": (forward + backward) / forward,
            "formula": "3 (+ layers' forward / total forward with checkpointing); attention non-causal"}


# How far a measurement may sit from its prediction before the record says they disagree. Byte counts of
# parameters, gradients and optimizer state are exact up to library constants shared between tensors;
# activations depend on which ops a library version saves; FLOP ratios on what the counter sees.
TOLERANCE = {"params_bytes": 0.01, "grads_bytes": 0.01, "optimizer_bytes": 0.01, "activations_bytes": 0.10,
             "flop_ratio": 0.02}


def predict(config: dict, device_type: str = "cpu", attention_kernel: str | None = None) -> dict:
    """Everything the record carries under `predicted`: `memory` in logical bytes, `memory_allocated` what
    the allocator of `device_type` holds for the same storages (what the tracker measures on that device)."""
    mem = memory(config, device_type)
    act = activations(config, attention_kernel)
    flops = flop_ratio(config)
    return {
        "memory": {"params_bytes": mem["params_bytes"], "grads_bytes": mem["grads_bytes"],
                   "optimizer_bytes": mem["optimizer_bytes"], "activations_bytes": act["activations_bytes"]},
        "memory_allocated": {**mem["allocated"], "device_type": device_type},
        "params": {"total": mem["total_params"], "trainable": mem["trainable_params"]},
        "flop_ratio": flops["flop_ratio"],
        "formulas": {"activations_bytes": act["formula"], "flop_ratio": flops["formula"]},
        "tolerance": dict(TOLERANCE),
    }


def compare(predicted: dict, metrics: dict) -> list[dict]:
    """Predicted against measured, one entry per quantity both have: {name, predicted, measured,
    relative_error, tolerance, agrees}."""
    # the tracker counts what the allocator holds (rounded blocks on CUDA): compare like with like
    allocated = predicted.get("memory_allocated") or {}
    pairs = [(k, allocated.get(k, predicted["memory"].get(k)), (metrics.get("memory") or {}).get(k))
             for k in ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes")]
    pairs.append(("flop_ratio", predicted.get("flop_ratio"), metrics.get("flop_ratio")))
    out = []
    for name, pred, meas in pairs:
        if not isinstance(pred, (int, float)) or not isinstance(meas, (int, float)):
            continue
        error = (meas - pred) / pred if pred else (0.0 if meas == 0 else math.inf)
        out.append({"name": name, "predicted": pred, "measured": meas, "relative_error": error,
                    "tolerance": TOLERANCE[name], "agrees": abs(error) <= TOLERANCE[name]})
    return out
