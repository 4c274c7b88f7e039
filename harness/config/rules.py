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
# QLoRA's variants by precision. The NF4 matmuls compute in bf16 in each (bnb_4bit_compute_dtype); what differs is
# the rest of the model: peft's prepare_model_for_kbit_training upcasts it to fp32 (HF's recipes), torchtune and
# unsloth keep it in bf16. An fp16 QLoRA would be a label the bf16 matmuls do not honour.
QLORA_UPCAST = "upcast: prepare_model_for_kbit_training, non-quantized weights and adapters fp32"
QLORA_VARIANTS = {
    "fp32": QLORA_UPCAST,
    "amp_bf16": f"{QLORA_UPCAST}, under bf16 autocast",
    "bf16": "bf16: non-quantized weights and adapters in bf16 (torchtune's)",
}
# What optimizer.zero_grad does between steps (workload.zero_grad): set_to_none frees every gradient (torch's
# default since 2.0), zeros fills them with zeros in place (the default before 2.0, and what transformers' Trainer
# did until v4.27), so every gradient is live through the next forward; gradient accumulation holds them the same
# way across its micro-batches.
ZERO_GRAD = {
    "set_to_none": "gradients freed after each step (torch >= 2.0's zero_grad)",
    "zeros": "gradients kept between steps, zero-filled (zero_grad(set_to_none=False); gradient accumulation)",
}
AUTOCAST_PRECISIONS = {"amp_bf16": "bfloat16", "amp_fp16": "float16"}

WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 4, "amp_fp16": 4}  # autocast keeps fp32 master weights
COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "amp_bf16": 2, "amp_fp16": 2}  # what matmuls save under autocast


def adapters_in_model_dtype(precision: str) -> bool:
    """peft upcasts LoRA adapters to fp32 unless the whole model is bf16: pure bf16 keeps them in bf16."""
    return precision == "bf16"


def qlora_upcasts(precision: str) -> bool:
    """QLoRA's upcast variant (every weight it does not quantize, and the adapters, in fp32), else the bf16 one."""
    return QLORA_VARIANTS[precision].startswith("upcast")


def adapter_bytes(precision: str) -> int:
    return 2 if adapters_in_model_dtype(precision) else 4


def mlp_checkpoint_segments(depth: int, segments: int | None) -> int:
    """checkpoint_sequential's segments for the mlp: checkpointing.segments, else round(sqrt(depth))."""
    return segments or max(1, round(math.sqrt(depth)))
