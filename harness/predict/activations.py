"""The analytic model's activation side: what autograd holds for backward, derived op by op from the saved
tensors of each op as PyTorch defines them, the way Korthikanti et al. 2022 count a GPT layer. No torch."""

from __future__ import annotations

from harness.config.rules import (
    ADAPTER_METHODS,
    COMPUTE_BYTES,
    LLAMA_DEFAULT_TARGETS,
    adapter_bytes,
    llama_shape,
    mlp_checkpoint_segments,
)
from harness.families.hf_config import family
from harness.families.hf_inventory import hf_model
from harness.predict.activations_hf import (
    Block,
    checkpointed_bytes,
    frozen_base_saving,
    full_training_bytes,
    hf_block,
)
from harness.predict.parameters import lora_targets, parameter_tensors


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


def llama_block(model: dict) -> Block:
    """model=llama as a Block: the Llama family's layer (harness/predict/activations_hf.py counts every family)."""
    s = llama_shape(model)
    return Block(
        hidden=s["hidden_size"],
        layers=s["num_layers"],
        heads=s["num_heads"],
        kv_heads=s["num_kv_heads"],
        head_dim=s["hidden_size"] // s["num_heads"],
        ff=s["intermediate_size"],
        vocab=s["vocab_size"],
    )


def transformer_block(model: dict) -> tuple[Block, str, str | None]:
    """(Block, attention implementation, model_type) of a transformers model section (llama or hf)."""
    if model["name"] == "llama":
        return llama_block(model), model["attn_implementation"], "llama"
    described = hf_model(model)
    model_type = described["data"]["model_type"]
    block = hf_block(model_type, described["shape"], described["inventory"]["config"])
    return block, described["attn_implementation"], model_type


def transformer_activations(config: dict, attention_kernel: str | None, device_type: str) -> dict:
    """A transformers causal LM (model=llama, model=hf): full training without or with checkpointing; LoRA and
    QLoRA on the default targets without checkpointing, as full training's count less what a frozen base does
    not keep (harness/predict/activations_hf.py, frozen_base_saving) plus each adapter's r-wide A output (saved by
    B, in the adapter dtype). QLoRA counts as LoRA on an fp32 model: prepare_model_for_kbit_training upcasts
    every weight it does not quantize to fp32, so hidden states flow in fp32, and bitsandbytes' 4-bit matmul
    saves only its packed weight."""
    model, method, ckpt = config["model"], config["method"], config["checkpointing"]["enabled"]
    precision = config["precision"]["name"]
    if precision.startswith("amp"):
        # autocast saves 16-bit copies of weights and fp32 norms beside 16-bit matmuls: derived for the mlp only
        return {"activations_bytes": None, "formula": f"not derived: {model['name']} under autocast"}
    block, attn, model_type = transformer_block(model)
    if family(model_type) is None:
        return {"activations_bytes": None, "formula": f"not derived: no block family for model_type {model_type}"}
    b, s = config["workload"]["batch_size"], config["workload"]["seq_len"]
    e = COMPUTE_BYTES[precision]
    args = (block, b, s, e, attn, attention_kernel, device_type)
    if method["name"] in ADAPTER_METHODS:
        targets = set(lora_targets(config))
        default = set(hf_model(model)["inventory"]["default_targets"]) if model["name"] == "hf" else None
        if ckpt or targets != (default or set(LLAMA_DEFAULT_TARGETS)):
            # With checkpointing peft makes the embedding output require grad and recomputation stops inside an
            # adapter; other target sets change which frozen linears save their inputs: not derived yet.
            return {
                "activations_bytes": None,
                "formula": "not derived: a frozen base under checkpointing, or LoRA beyond the default targets",
            }
        adapted = sum(1 for t in parameter_tensors(config) if t.name in targets and t.linear_in)
        adapters = adapted * b * s * method["r"] * adapter_bytes(precision)
        frozen = frozen_base_saving(block, b, s, e, device_type)
        out = {
            "activations_bytes": full_training_bytes(*args) - frozen + adapters,
            "formula": "full training's count - what a frozen base does not keep + t·r per adapter",
        }
    elif attention_kernel == "math" and ckpt and block.style != "gpt2":
        # the recompute's peak holds the math kernel's transient fp32 upcasts and s x s scores: not derived for
        # llama-like blocks; gpt2's count (the math kernel is what its dropout selects on a CPU) holds, measured
        return {"activations_bytes": None, "formula": "not derived: SDPA's math kernel under checkpointing"}
    elif ckpt:
        out = {
            "activations_bytes": checkpointed_bytes(*args),
            "formula": "checkpointing per decoder layer: layer inputs + max(head, one recomputed layer)",
        }
    else:
        out = {
            "activations_bytes": full_training_bytes(*args),
            "formula": "layers x (norms + attention + MLP) + final norm + fp32 log-softmax + labels",
        }
    out["formula"] += f" [{block.style} block, {model_type}]"
    if attn == "sdpa":
        kernel = attention_kernel or "a fused kernel (assumed: the kernel that ran was not recorded)"
        out["formula"] += f"; SDPA {kernel}"
    return out


def activations(config: dict, attention_kernel: str | None = None, device_type: str = "cpu") -> dict:
    """What the training forward holds for backward; `attention_kernel` is the SDPA kernel that ran (the
    record's `resolved.attention_kernel.fwd_train`), None where it is not known (a fused one is assumed);
    `device_type` decides what a dropout mask takes (a bool on CUDA, the tensor's dtype on a CPU)."""
    if config["model"]["name"] == "mlp":
        return mlp_activation_bytes(config)
    return transformer_activations(config, attention_kernel, device_type)


def activation_bytes(config: dict, attention_kernel: str | None = None, device_type: str = "cpu") -> int | None:
    return activations(config, attention_kernel, device_type)["activations_bytes"]
