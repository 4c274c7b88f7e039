"""The analytic model's parameter side: every parameter tensor the config defines, and the storages of
parameters, gradients and optimizer state it implies (logical bytes, and as the device's allocator holds them).
Sources: Dettmers et al. 2021/2023 for 8-bit state and NF4, Hu et al. 2021 for LoRA. No torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness import families
from harness.config.rules import ADAPTER_METHODS, PAGED_MIN_NUMEL, PAGED_OPTIMIZERS, WEIGHT_BYTES, adapter_bytes
from harness.predict.allocator import allocated_bytes

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

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
    in_layer: bool = False  # inside a decoder layer (the transformers families)
    # model=hf: bitsandbytes quantizes this weight, or this bias's linear (None: every linear but lm_head)
    quantized: bool | None = None


def parameter_tensors(cfg: BenchConfig) -> list[Tensor]:
    """Every parameter tensor of the model (its family lists them: harness/families/)."""
    return families.of(cfg.model).parameter_tensors(cfg.model)


def lora_targets(cfg: BenchConfig) -> tuple[str, ...]:
    """method.target_modules, else the family's default: every linear layer of attention and MLP (for model=hf
    the leaf names of the linears inside the decoder layers of the model itself)."""
    if cfg.method.target_modules is not None:
        return tuple(cfg.method.target_modules)
    return tuple(families.of(cfg.model).default_targets(cfg.model))


def adapter_numels(cfg: BenchConfig) -> list[int]:
    """LoRA's A (r x d_in) and B (d_out x r) of every adapted linear, in order (Hu et al. 2021)."""
    r, targets = cfg.method.r, lora_targets(cfg)
    return [
        n
        for t in parameter_tensors(cfg)
        if t.name in targets and t.linear_in
        for n in (r * t.linear_in, r * t.linear_out)
    ]


def lora_parameter_count(cfg: BenchConfig) -> int:
    """r·(d_in + d_out) per adapted linear."""
    return sum(adapter_numels(cfg))


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
    paged: bool = False  # bitsandbytes' paged state: CUDA unified memory, outside PyTorch's allocator


def fused_adamw(cfg: BenchConfig, device_type: str) -> bool:
    """The harness's rule (harness/measure/methods.py): method.fused, else fused on CUDA and foreach elsewhere."""
    fused = cfg.method.fused
    return fused if fused is not None else device_type == "cuda"


def trainable_numels(cfg: BenchConfig) -> list[int]:
    """Element count of each trainable tensor: every parameter, or LoRA's A (r x d_in) and B (d_out x r) per
    adapted linear."""
    if cfg.method.name in ADAPTER_METHODS:
        return adapter_numels(cfg)
    return [t.numel for t in parameter_tensors(cfg)]


def parameter_storages(cfg: BenchConfig, trainable: list[int]) -> tuple[list[Storage], int]:
    """The parameters' storages (the frozen base's and LoRA's adapters'), and the element bytes of what trains."""
    method, precision = cfg.method.name, cfg.precision.name
    e = WEIGHT_BYTES[precision]
    out: list[Storage] = []
    if method == "qlora":
        # bitsandbytes quantizes every linear but lm_head; the rest is in the weights' dtype: fp32 in the upcast
        # variant (prepare_model_for_kbit_training), bf16 in the bf16 one (config/rules.py QLORA_VARIANTS)
        for t in parameter_tensors(cfg):
            quantized = t.quantized if t.quantized is not None else (t.linear_in and t.name != "lm_head")
            if t.name == "bias" and quantized:  # Linear4bit casts its bias to the compute dtype at the first forward
                sizes = [NF4_COMPUTE_BYTES * t.numel]
            else:
                sizes = nf4_storages(t.numel) if quantized else [e * t.numel]
            out += [Storage("params_bytes", n) for n in sizes]
    else:
        out += [Storage("params_bytes", e * t.numel) for t in parameter_tensors(cfg)]
    adapter_e = adapter_bytes(precision)  # peft's rule, QLoRA's too: bf16 adapters in a bf16 model, else fp32
    if method not in ADAPTER_METHODS:
        return out, e
    return out + [Storage("params_bytes", adapter_e * n) for n in trainable], adapter_e


def paged_storages(cfg: BenchConfig, trainable: list[int], device_type: str) -> list[Storage]:
    """bitsandbytes' paged AdamW (Optimizer2State): two states per tensor, fp32 (PagedAdamW; whatever the
    parameter's dtype) or 8-bit with fp32 block absmax (PagedAdamW8bit), no step tensor (bitsandbytes counts steps
    in a Python int). A state of PAGED_MIN_NUMEL elements or more is paged on CUDA; the absmax and the
    quantization maps stay in the allocator. On a CPU bitsandbytes pages nothing."""
    eight_bit = PAGED_OPTIMIZERS[cfg.method.name] == "PagedAdamW8bit"
    minimum = cfg.method.min_8bit_size if eight_bit else None
    out: list[Storage] = []
    for n in trainable:
        paged = device_type == "cuda" and n >= PAGED_MIN_NUMEL
        states = adamw8bit_storages(n, minimum) if eight_bit else [4 * n, 4 * n]
        out += [Storage("optimizer_bytes", b, paged=paged and i < 2) for i, b in enumerate(states)]
    if eight_bit and any(n >= minimum for n in trainable):
        out += [Storage("optimizer_bytes", BNB8_QMAP_BYTES // 2)] * 2
    return out


def optimizer_storages(cfg: BenchConfig, trainable: list[int], te: int, device_type: str) -> list[Storage]:
    """The optimizer's state for the trainable tensors (of `te` bytes an element)."""
    method = cfg.method.name
    out: list[Storage] = []
    if cfg.method.paged:
        return paged_storages(cfg, trainable, device_type)
    if method == "adamw8bit":
        minimum = cfg.method.min_8bit_size
        out += [Storage("optimizer_bytes", b) for n in trainable for b in adamw8bit_storages(n, minimum)]
        if any(n >= minimum for n in trainable):
            # the two quantization maps are one pair of tensors shared by every 8-bit state of the optimizer
            out += [Storage("optimizer_bytes", BNB8_QMAP_BYTES // 2)] * 2
    elif method != "sgd":
        on_host = not fused_adamw(cfg, device_type)
        for n in trainable:  # exp_avg, exp_avg_sq, and a 4-byte float32 step per tensor
            out += [
                Storage("optimizer_bytes", te * n),
                Storage("optimizer_bytes", te * n),
                Storage("optimizer_bytes", 4, on_host=on_host),
            ]
    return out


def storages(cfg: BenchConfig, device_type: str = "cpu") -> list[Storage]:
    """Every storage of parameters, gradients and optimizer state the config implies, one entry each: the
    logical bytes are their sum, what the allocator holds the sum of each rounded (harness/predict/allocator.py)."""
    trainable = trainable_numels(cfg)
    params, te = parameter_storages(cfg, trainable)
    grads = [Storage("grads_bytes", te * n) for n in trainable]
    return params + grads + optimizer_storages(cfg, trainable, te, device_type)


MEMORY_CATEGORIES = ("params_bytes", "grads_bytes", "optimizer_bytes")


def memory(cfg: BenchConfig, device_type: str = "cpu") -> dict:
    """Predicted params, gradients and optimizer state bytes (activations: see activation_bytes): the logical
    figures, and under `allocated` what the device's allocator holds for them (equal on a CPU)."""
    listed = storages(cfg, device_type)
    out = {cat: sum(s.nbytes for s in listed if s.category == cat) for cat in MEMORY_CATEGORIES}
    # paged state is counted as itself: unified memory is not the caching allocator's blocks
    out["allocated"] = {
        cat: sum(
            allocated_bytes(s.nbytes, "cpu" if s.on_host or s.paged else device_type)
            for s in listed
            if s.category == cat
        )
        for cat in MEMORY_CATEGORIES
    }
    if cfg.method.paged:  # only then: the predictions of every other config stay as they were
        out["paged_bytes"] = sum(s.nbytes for s in listed if s.paged)
    out.update(
        {
            "trainable_params": sum(trainable_numels(cfg)),
            "total_params": sum(t.numel for t in parameter_tensors(cfg)),
        }
    )
    return out
