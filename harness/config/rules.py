"""The rules every room shares, said once: phases, method and precision sets, byte sizes per precision, the
adapter dtype rule, llama shapes, default LoRA targets, checkpoint segments. No torch here."""

from __future__ import annotations

import math
from typing import Any

from harness.families.llama_presets import LLAMA_PRESETS

# The matched workload's phases in the order the timed loop interleaves them (harness/measure/workload.py).
PHASES = ("fwd_train", "fwd_bwd", "step", "fwd_infer")
TRAINING_PHASES = tuple(p for p in PHASES if p != "fwd_infer")
FORWARD_PHASES = ("fwd_train", "fwd_infer")

METHODS = ("full_adamw", "adamw8bit", "lora", "qlora", "sgd")
ADAPTER_METHODS = ("lora", "qlora")  # peft LoRA on a frozen base
ADAMW_METHODS = ("full_adamw", "lora", "qlora")  # torch.optim.AdamW
BITSANDBYTES_METHODS = ("adamw8bit", "qlora")
PRECISIONS = ("fp32", "bf16", "amp_bf16", "amp_fp16")
# QLoRA computes NF4 matmuls in bf16 with fp32 adapters: "pure bf16" or fp16 would be labels the run ignores
QLORA_PRECISIONS = ("fp32", "amp_bf16")
AUTOCAST_PRECISIONS = {"amp_bf16": "bfloat16", "amp_fp16": "float16"}

WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 4, "amp_fp16": 4}  # autocast keeps fp32 master weights
COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 2, "amp_fp16": 2}  # what matmuls save under autocast

TRANSFORMERS_MODELS = ("llama", "hf")  # model groups built by transformers: token ids in, a causal-LM loss out

LLAMA_SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")
LLAMA_DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MLP_DEFAULT_TARGETS = ("linear",)


def adapters_in_model_dtype(precision: str) -> bool:
    """peft upcasts LoRA adapters to fp32 unless the whole model is bf16: pure bf16 keeps them in bf16."""
    return precision == "bf16"


def adapter_bytes(precision: str) -> int:
    return 2 if adapters_in_model_dtype(precision) else 4


def llama_shape(model: Any) -> dict:
    """The preset's shape with the explicitly set fields on top (`model` is the config's model section, a dict
    or a DictConfig), plus the preset's fixed fields (rope_theta, tied embeddings, context length)."""
    shape = dict(LLAMA_PRESETS[model.get("preset")])
    for key in LLAMA_SHAPE_KEYS:
        if model.get(key) is not None:
            shape[key] = model.get(key)
    return shape


def default_targets(model_name: str) -> tuple[str, ...]:
    """LoRA targets when method.target_modules is null: every linear layer of attention and MLP."""
    return LLAMA_DEFAULT_TARGETS if model_name == "llama" else MLP_DEFAULT_TARGETS


def mlp_checkpoint_segments(depth: int, segments: int | None) -> int:
    """checkpoint_sequential's segments for the mlp: checkpointing.segments, else round(sqrt(depth))."""
    return segments or max(1, round(math.sqrt(depth)))
