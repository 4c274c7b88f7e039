"""The analytic model's activation side: what autograd holds for backward, derived op by op from the saved
tensors of each op as PyTorch defines them, the way Korthikanti et al. 2022 count a GPT layer. No torch."""

from __future__ import annotations

from harness.spec.parameters import lora_targets, parameter_tensors
from harness.spec.shapes import (
    ADAPTER_METHODS,
    COMPUTE_BYTES,
    LLAMA_DEFAULT_TARGETS,
    adapter_bytes,
    llama_shape,
    mlp_checkpoint_segments,
)


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
        return {
            "activations_bytes": depth * unit + unit + (depth - 1) * w * w * e + loss,
            "formula": "autocast: depth x ReLU output + input cast + (depth-1) 16-bit weight copies + loss",
        }
    if not config["checkpointing"]["enabled"]:
        return {
            "activations_bytes": depth * per_layer + unit + loss,
            "formula": "depth x (ReLU output [+ LoRA r-wide]) + input + fp32 loss copy",
        }
    k = min(checkpoint_segments(config), depth)
    size = depth // k
    last = depth - size * (k - 1)
    end_of_forward = (k - 1) * unit + last * per_layer + unit + loss
    recompute = (k - 1) * unit + size * per_layer
    return {
        "activations_bytes": max(end_of_forward, recompute),
        "formula": f"checkpoint_sequential, {k} segments: max(end of forward, recompute of one segment)",
    }


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
        return {
            "activations_bytes": layers * layer + head + rotary,
            "formula": "layers x (2 RMSNorm + attention + SwiGLU) + final norm + fp32 log-softmax + labels",
        }
    stored = layers * t * h * e
    # while a layer is recomputed, its stored input is also its first norm's input: one storage in fp32
    recompute = stored + layer - (t * h * 4 if e == 4 else 0) + rotary
    return {
        "activations_bytes": max(stored + head + rotary, recompute),
        "formula": "checkpointing per decoder layer: layer inputs + max(head, one recomputed layer)",
    }


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
    return {
        "activations_bytes": full["activations_bytes"] - frozen + adapted * t * r * adapter_e,
        "formula": "full training's count - frozen norms, head and first-layer input + t·r per adapter",
    }


def activations(config: dict, attention_kernel: str | None = None) -> dict:
    """What the training forward holds for backward; `attention_kernel` is the SDPA kernel that ran (the
    record's `resolved.attention_kernel.fwd_train`), None where it is not known (a fused one is assumed)."""
    if config["model"]["name"] == "mlp":
        return mlp_activation_bytes(config)
    if config["precision"]["name"].startswith("amp"):
        # autocast saves 16-bit copies of weights and fp32 norms beside 16-bit matmuls: derived for the mlp only
        return {"activations_bytes": None, "formula": "not modelled: llama under autocast"}
    method = config["method"]
    if (
        method["name"] == "lora"
        and not config["checkpointing"]["enabled"]
        and (method.get("target_modules") is None or set(method["target_modules"]) == set(LLAMA_DEFAULT_TARGETS))
    ):
        out = llama_lora_activation_bytes(config, attention_kernel)
    elif method["name"] in ADAPTER_METHODS:
        # With checkpointing peft makes the embedding output require grad; other target sets change which
        # frozen linears save their inputs; QLoRA's preparation upcasts to fp32: not derived yet.
        return {
            "activations_bytes": None,
            "formula": "not modelled: llama with a frozen base, beyond LoRA on every linear without checkpointing",
        }
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
