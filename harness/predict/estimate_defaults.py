"""What `bench estimate` assumes where the user set nothing, so that it answers the question as people ask it ("will
Llama 3.1 8B LoRA fit on 24 GB?"): a published model in the dtype it is published in, a sequence of 2048 tokens
(capped by the model's context). `bench run` keeps its own defaults (fp32, 64 tokens: small, fast cases). Every
assumption is named in the answer. No torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import families
from harness.config.rules import ADAPTER_METHODS, qlora_upcasts

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

ESTIMATE_SEQ_LEN = 2048  # a fine-tuning sequence as people run them (torchtune's and HF's LoRA recipes: 2048)
# The dtype each shipped release is published in: its config.json's torch_dtype on the Hugging Face hub (gpt2's
# config.json names none: its weights are fp32). model=llama and model=hf presets share these names.
RELEASE_DTYPES = {
    "llama-3.2-1b": "bfloat16",
    "llama-3.2-3b": "bfloat16",
    "llama-3.1-8b": "bfloat16",
    "llama-3.1-70b": "bfloat16",
    "llama-3.1-405b": "bfloat16",
    "llama-2-7b": "float16",
    "qwen2.5-0.5b": "bfloat16",
    "qwen2.5-7b": "bfloat16",
    "qwen2.5-14b": "bfloat16",
    "qwen3-8b": "bfloat16",
    "mistral-7b-v0.3": "bfloat16",
    "gemma-2-2b": "float32",
    "gemma-2-9b": "float32",
    "phi-3-mini": "bfloat16",
    "gpt2": "float32",
    "gpt2-xl": "float32",
}
# torch_dtype -> this harness's precision; fp16 weights are counted as bf16, the same bytes (there is no pure fp16
# precision here: fp16 training runs under autocast with a grad scaler)
DTYPE_PRECISION = {"bfloat16": "bf16", "float16": "bf16", "float32": "fp32"}


def release_dtype(cfg: BenchConfig) -> str | None:
    """The dtype the model is published in: a shipped preset's, or a local config.json's torch_dtype (None: not a
    published model, e.g. the tiny presets or the mlp)."""
    model = cfg.model
    preset = getattr(model, "preset", None)
    if preset in RELEASE_DTYPES:
        return RELEASE_DTYPES[preset]
    if getattr(model, "config", None):
        from harness.families.hf_inventory import hf_model

        data = hf_model(model)["data"]
        return data.get("torch_dtype") or data.get("dtype")
    return None


def assumed_overrides(cfg: BenchConfig, given: set[str]) -> tuple[list[str], list[str]]:
    """(overrides to add, every assumption in words) for a config composed from overrides of the keys `given`."""
    extra: list[str] = []
    said: list[str] = []
    dtype = release_dtype(cfg)
    if "precision" not in given and dtype in DTYPE_PRECISION:
        precision = DTYPE_PRECISION[dtype]
        if cfg.method.name == "qlora" and not qlora_upcasts(precision):
            # peft's prepare_model_for_kbit_training, the path HF's QLoRA recipes take, whatever the model's dtype
            said.append(
                f"fp32 outside the 4-bit weights (QLoRA's upcast variant, peft's prepare_model_for_kbit_training; "
                f"the model's dtype is {dtype}: precision={precision} for the bf16 variant, torchtune's)"
            )
        else:
            extra.append(f"precision={precision}")
            said.append(
                "bf16 (the model's dtype)" if dtype == "bfloat16" else f"{precision} (the model's dtype: {dtype})"
            )
    if "workload.seq_len" not in given and families.of(cfg.model).transformers:
        context = families.of(cfg.model).context_length(cfg.model) or ESTIMATE_SEQ_LEN
        seq = min(ESTIMATE_SEQ_LEN, context)
        extra.append(f"workload.seq_len={seq}")
        said.append(f"seq {seq}" + (" (the model's context)" if seq < ESTIMATE_SEQ_LEN else ""))
    if "workload.batch_size" not in given:
        said.append(f"batch {cfg.workload.batch_size}")
    if "checkpointing" not in given and "checkpointing.enabled" not in given:
        said.append(f"checkpointing {'on' if cfg.checkpointing.enabled else 'off'}")
    if "workload.zero_grad" not in given:
        said.append("gradients freed after each step (workload.zero_grad=zeros keeps them)")
    if "method" not in given:
        said.append(f"method {cfg.method.name}")
    elif cfg.method.name in ADAPTER_METHODS and not given & {"method.r", "method.target_modules"}:
        said.append(f"LoRA r={cfg.method.r} on every linear of the decoder layers")
    return extra, said
