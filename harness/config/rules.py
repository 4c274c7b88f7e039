"""The rules every room shares, said once: phases, method and precision sets, byte sizes per precision, the
adapter dtype rule, the mlp's checkpoint segments. No torch here. (What depends on a model family lives in
harness/families/.)"""

from __future__ import annotations

import math

# The matched workload's phases in the order the timed loop interleaves them (harness/measure/workload.py).
PHASES = ("fwd_train", "fwd_bwd", "step", "fwd_infer")
TRAINING_PHASES = tuple(p for p in PHASES if p != "fwd_infer")
FORWARD_PHASES = ("fwd_train", "fwd_infer")

METHODS = ("full_adamw", "adamw8bit", "lora", "qlora", "sgd")
ADAPTER_METHODS = ("lora", "qlora")  # peft LoRA on a frozen base
ADAMW_METHODS = ("full_adamw", "lora", "qlora")  # torch.optim.AdamW
BITSANDBYTES_METHODS = ("adamw8bit", "qlora")
# bitsandbytes' paged optimizers (method.paged): PagedAdamW8bit for adamw8bit, PagedAdamW (32-bit state) for the
# AdamW methods; SGD without momentum keeps no state to page
PAGED_OPTIMIZERS = {
    "full_adamw": "PagedAdamW",
    "lora": "PagedAdamW",
    "qlora": "PagedAdamW",
    "adamw8bit": "PagedAdamW8bit",
}
# bitsandbytes Optimizer8bit.get_state_buffer: a state of fewer elements than this stays in PyTorch's allocator
PAGED_MIN_NUMEL = 100_000
PRECISIONS = ("fp32", "bf16", "amp_bf16", "amp_fp16")
# QLoRA computes NF4 matmuls in bf16 with fp32 adapters: "pure bf16" or fp16 would be labels the run ignores
QLORA_PRECISIONS = ("fp32", "amp_bf16")
AUTOCAST_PRECISIONS = {"amp_bf16": "bfloat16", "amp_fp16": "float16"}

WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 4, "amp_fp16": 4}  # autocast keeps fp32 master weights
COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 2, "amp_fp16": 2}  # what matmuls save under autocast


def adapters_in_model_dtype(precision: str) -> bool:
    """peft upcasts LoRA adapters to fp32 unless the whole model is bf16: pure bf16 keeps them in bf16."""
    return precision == "bf16"


def adapter_bytes(precision: str) -> int:
    return 2 if adapters_in_model_dtype(precision) else 4


def mlp_checkpoint_segments(depth: int, segments: int | None) -> int:
    """checkpoint_sequential's segments for the mlp: checkpointing.segments, else round(sqrt(depth))."""
    return segments or max(1, round(math.sqrt(depth)))
