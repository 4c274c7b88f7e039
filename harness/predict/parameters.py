"""The analytic model's parameter side: every parameter tensor the config defines, and the storages of
parameters, gradients and optimizer state it implies (logical bytes, and as the device's allocator holds them).
Sources: Dettmers et al. 2021/2023 for 8-bit state and NF4, Hu et al. 2021 for LoRA. No torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.config.rules import ADAPTER_METHODS, WEIGHT_BYTES, adapter_bytes, default_targets, llama_shape
from harness.families.hf_inventory import hf_model
from harness.predict.allocator import allocated_bytes

# bitsandbytes 8-bit optimizers: block-wise quantization in blocks of 256, one fp32 absmax per block and state,
# and two 256-entry fp32 quantization maps per tensor (Dettmers et al. 2021; bitsandbytes Optimizer8bit).
BNB8_BLOCK = 256
BNB8_QMAP_BYTES = 2 * 256 * 4
# NF4 with double quantization (QLoRA §3): 4-bit codes, one 8-bit absmax per 64 weights, one fp32 absmax per
# 256 of those, plus per-tensor constants (a 16-entry fp32 NF4 code, a 256-entry fp32 code for the absmax
# and its fp32 offset).
NF4_BLOCK, NF4_NESTED_BLOCK = 64, 256
NF4_TENSOR_CONSTANTS = (16 * 4, 256 * 4, 4)  # bytes of each per-tensor constant, one storage each
NF4_COMPUTE_BYTES = 2  # bnb_4bit_compute_dtype=bfloat16 (harness/measure/models.py nf4_config)


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor of the model as the config defines it."""

    name: str  # module kind: q_proj, linear, embed_tokens, norm, lm_head, bias ...
    numel: int
    linear_in: int = 0  # for weights of linear layers: (in, out), which LoRA adapts
    linear_out: int = 0
    in_layer: bool = False  # model=hf: inside a decoder layer
    # model=hf: bitsandbytes quantizes this weight, or this bias's linear (None: every linear but lm_head)
    quantized: bool | None = None


def hf_parameter_tensors(model: dict) -> list[Tensor]:
    """model=hf: every parameter of the model transformers builds, listed on the meta device."""
    out = []
    for name, numel, d_in, d_out, in_layer, quantized, count in hf_model(model)["inventory"]["tensors"]:
        out += [Tensor(name, numel, d_in, d_out, in_layer, quantized)] * count
    return out


def parameter_tensors(config: dict) -> list[Tensor]:
    model = config["model"]
    if model["name"] == "hf":
        return hf_parameter_tensors(model)
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
        out += [
            Tensor("q_proj", h * nh * hd, h, nh * hd),
            Tensor("k_proj", h * kv * hd, h, kv * hd),
            Tensor("v_proj", h * kv * hd, h, kv * hd),
            Tensor("o_proj", nh * hd * h, nh * hd, h),
            Tensor("gate_proj", h * ff, h, ff),
            Tensor("up_proj", h * ff, h, ff),
            Tensor("down_proj", ff * h, ff, h),
            Tensor("norm", h),
            Tensor("norm", h),
        ]
    out.append(Tensor("norm", h))
    if not s["tie_word_embeddings"]:
        out.append(Tensor("lm_head", s["vocab_size"] * h, h, s["vocab_size"]))
    return out


def lora_targets(config: dict) -> tuple[str, ...]:
    """method.target_modules, else every linear layer of attention and MLP: for model=hf the leaf names of the
    linears inside the decoder layers of the model itself (harness/families/hf_inventory.py)."""
    method = config["method"]
    if method.get("target_modules") is not None:
        return tuple(method["target_modules"])
    if config["model"]["name"] == "hf":
        return tuple(hf_model(config["model"])["inventory"]["default_targets"])
    return default_targets(config["model"]["name"])


def adapter_numels(config: dict) -> list[int]:
    """LoRA's A (r x d_in) and B (d_out x r) of every adapted linear, in order (Hu et al. 2021)."""
    r, targets = config["method"]["r"], lora_targets(config)
    return [
        n
        for t in parameter_tensors(config)
        if t.name in targets and t.linear_in
        for n in (r * t.linear_in, r * t.linear_out)
    ]


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
    logical bytes are their sum, what the allocator holds the sum of each rounded (harness/predict/allocator.py)."""
    method, precision = config["method"]["name"], config["precision"]["name"]
    tensors = parameter_tensors(config)
    trainable = trainable_numels(config)
    e = WEIGHT_BYTES[precision]
    out: list[Storage] = []
    if method == "qlora":
        # bitsandbytes quantizes every linear but lm_head; prepare_model_for_kbit_training upcasts the rest to fp32
        for t in tensors:
            quantized = t.quantized if t.quantized is not None else (t.linear_in and t.name != "lm_head")
            if t.name == "bias" and quantized:  # Linear4bit casts its bias to the compute dtype at the first forward
                sizes = [NF4_COMPUTE_BYTES * t.numel]
            else:
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
            out += [
                Storage("optimizer_bytes", te * n),
                Storage("optimizer_bytes", te * n),
                Storage("optimizer_bytes", 4, on_host=on_host),
            ]
    return out


MEMORY_CATEGORIES = ("params_bytes", "grads_bytes", "optimizer_bytes")


def memory(config: dict, device_type: str = "cpu") -> dict:
    """Predicted params, gradients and optimizer state bytes (activations: see activation_bytes): the logical
    figures, and under `allocated` what the device's allocator holds for them (equal on a CPU)."""
    listed = storages(config, device_type)
    out = {cat: sum(s.nbytes for s in listed if s.category == cat) for cat in MEMORY_CATEGORIES}
    out["allocated"] = {
        cat: sum(allocated_bytes(s.nbytes, "cpu" if s.on_host else device_type) for s in listed if s.category == cat)
        for cat in MEMORY_CATEGORIES
    }
    out.update(
        {
            "trainable_params": sum(trainable_numels(config)),
            "total_params": sum(t.numel for t in parameter_tensors(config)),
        }
    )
    return out
