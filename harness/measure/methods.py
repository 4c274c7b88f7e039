"""Training methods: full AdamW, bitsandbytes AdamW8bit, peft LoRA, QLoRA (NF4 + LoRA), plain SGD.

`build_trainable` returns the model ready to train, its optimizer and what was resolved along the way
(targets, fused kernel, checkpoint segments, dtypes) for the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from harness import families
from harness.config.groups import BenchConfig, MethodConfig
from harness.config.rules import (
    ADAPTER_METHODS,
    AUTOCAST_PRECISIONS,
    PAGED_OPTIMIZERS,
    PRECISIONS,
    QLORA_VARIANTS,
    WEIGHT_BYTES,
    adapters_in_model_dtype,
    mlp_checkpoint_segments,
    qlora_upcasts,
)
from harness.families.hf_config import CAUSAL_LM
from harness.predict.parameters import lora_targets

# The weights' dtype follows config/rules.py's byte sizes (autocast keeps fp32 master weights).
PRECISION_WEIGHT_DTYPE = {p: torch.bfloat16 if WEIGHT_BYTES[p] == 2 else torch.float32 for p in PRECISIONS}
AUTOCAST_DTYPE = {name: getattr(torch, dtype) for name, dtype in AUTOCAST_PRECISIONS.items()}
TRANSFORMERS_CHECKPOINTING = "transformers gradient_checkpointing_enable(use_reentrant=False), every layer"


@dataclass
class Trainable:
    model: nn.Module  # what the phases call: the model, or its DDP / FSDP2 form in a multi-rank case
    optimizer: torch.optim.Optimizer
    resolved: dict = field(default_factory=dict)
    base: nn.Module | None = None  # the model under a DDP wrapper (its config, its input embeddings)


def _enable_checkpointing(model: nn.Module, cfg: BenchConfig, resolved: dict) -> None:
    if not cfg.checkpointing.enabled:
        return
    if not families.of(cfg.model).transformers:  # the mlp: segments of its Sequential
        segments = mlp_checkpoint_segments(cfg.model.depth, cfg.checkpointing.segments)
        model.checkpoint_segments = segments
        resolved["checkpoint_segments"] = segments
        resolved["checkpointing"] = "torch.utils.checkpoint.checkpoint_sequential(use_reentrant=False)"
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        resolved["checkpointing"] = TRANSFORMERS_CHECKPOINTING


def _base_model(cfg: BenchConfig, device: torch.device, resolved: dict) -> nn.Module:
    family = families.of(cfg.model)
    family.describe(cfg.model, resolved)
    if cfg.method.name == "qlora":
        resolved["base_weights"] = "nf4 + double quantization, bf16 compute (bitsandbytes)"
        resolved["qlora_variant"] = QLORA_VARIANTS[cfg.precision.name]
        resolved["loading_path"] = (
            "save_pretrained -> from_pretrained(BitsAndBytesConfig)"
            if family.transformers
            else "nn.Linear -> bitsandbytes Linear4bit"
        )
        dtype = None if qlora_upcasts(cfg.precision.name) else PRECISION_WEIGHT_DTYPE[cfg.precision.name]
        return family.build_nf4(cfg.model, device, cfg.workload.seed, dtype)
    dtype = PRECISION_WEIGHT_DTYPE[cfg.precision.name]
    resolved["weight_dtype"] = dtype_name(dtype)
    return family.build(cfg.model, device, dtype, cfg.workload.seed)


def _apply_lora(model: nn.Module, cfg: BenchConfig, resolved: dict) -> nn.Module:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    method = cfg.method
    transformers = families.of(cfg.model).transformers
    targets = list(lora_targets(cfg))
    resolved["target_modules"] = targets
    if method.name == "qlora" and transformers and qlora_upcasts(cfg.precision.name):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.checkpointing.enabled,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        resolved["prepare_model_for_kbit_training"] = True
    else:
        # bf16 QLoRA keeps what prepare_model_for_kbit_training does that training needs: the base frozen (peft
        # does it), checkpointing, and the embedding output requiring grad under it (transformers'
        # gradient_checkpointing_enable calls enable_input_require_grads for an input_ids model)
        _enable_checkpointing(model, cfg, resolved)
    lora = LoraConfig(
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=targets,
        bias="none",
        # an encoder's head: no task type, so only the adapters train (peft's SEQ_CLS would also train a copy of
        # the classifier, modules_to_save, which the parameter count does not hold)
        task_type="CAUSAL_LM" if transformers and resolved.get("head", CAUSAL_LM) == CAUSAL_LM else None,
    )
    # Pure bf16 keeps the adapters in bf16 too; peft would otherwise upcast them to fp32.
    peft_model = get_peft_model(model, lora, autocast_adapter_dtype=not adapters_in_model_dtype(cfg.precision.name))
    if cfg.method.name == "qlora" and transformers and cfg.checkpointing.enabled:
        resolved["checkpointing"] = TRANSFORMERS_CHECKPOINTING
    adapter = next(p for n, p in peft_model.named_parameters() if "lora_" in n)
    resolved["adapter_dtype"] = dtype_name(adapter.dtype)
    if method.name == "qlora":  # what the variant left the weights bitsandbytes does not quantize in
        resolved["weight_dtype"] = _non_quantized_dtype(peft_model)
    return peft_model


def _non_quantized_dtype(model: nn.Module) -> str:
    """The dtype of the weights bitsandbytes did not quantize (embeddings, norms, lm_head, biases)."""
    kept = (p.dtype for n, p in model.named_parameters() if p.is_floating_point() and "lora_" not in n)
    dtype = next(kept, None)
    return dtype_name(dtype) if dtype is not None else "none: every weight is 4-bit"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _fused(cfg: BenchConfig, device: torch.device) -> bool:
    return cfg.method.fused if cfg.method.fused is not None else device.type == "cuda"


def _optimizer(model: nn.Module, cfg: BenchConfig, device: torch.device, resolved: dict) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    method = cfg.method
    if method.paged:
        return _paged_optimizer(params, method, resolved)
    if method.name == "adamw8bit":
        import bitsandbytes as bnb

        resolved["optimizer"] = f"bitsandbytes.optim.AdamW8bit(min_8bit_size={method.min_8bit_size})"
        return bnb.optim.AdamW8bit(
            params, lr=method.lr, weight_decay=method.weight_decay, min_8bit_size=method.min_8bit_size
        )
    if method.name == "sgd":
        resolved["optimizer"] = "torch.optim.SGD(momentum=0)"
        return torch.optim.SGD(params, lr=method.lr, weight_decay=method.weight_decay)
    fused = _fused(cfg, device)
    resolved["optimizer"] = f"torch.optim.AdamW({'fused' if fused else 'foreach'})"
    if fused:
        return torch.optim.AdamW(params, lr=method.lr, weight_decay=method.weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=method.lr, weight_decay=method.weight_decay, foreach=True)


def _paged_optimizer(params: list, method: MethodConfig, resolved: dict) -> torch.optim.Optimizer:
    """bitsandbytes' paged AdamW: its state in CUDA unified memory (outside PyTorch's allocator), which the driver
    moves to host memory under pressure instead of failing the step."""
    import bitsandbytes as bnb

    name = PAGED_OPTIMIZERS[method.name]
    kwargs = {"min_8bit_size": method.min_8bit_size} if name == "PagedAdamW8bit" else {}
    resolved["optimizer"] = f"bitsandbytes.optim.{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    return getattr(bnb.optim, name)(params, lr=method.lr, weight_decay=method.weight_decay, **kwargs)


def _keep_cpu_4bit_layout(model: nn.Module, resolved: dict) -> None:
    """bitsandbytes repacks 4-bit weights into an inference-only CPU layout on the first eval forward, in
    place, after which training forwards fail. Every phase must run on the same weights and kernels."""
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    if count:
        resolved["bnb_cpu_inference_repacking"] = f"disabled on {count} Linear4bit modules"


def build_trainable(cfg: BenchConfig, device: torch.device, wrap: Callable | None = None) -> Trainable:
    """The model with its method applied and its optimizer; `wrap(model, cfg, device, resolved)` (a multi-rank
    case: harness/measure/sharding.py) comes between the two, so the optimizer holds the parameters it trains."""
    resolved: dict = {"device": str(device)}
    model = _base_model(cfg, device, resolved)
    if device.type == "cpu" and cfg.method.name == "qlora":
        _keep_cpu_4bit_layout(model, resolved)
    if cfg.method.name in ADAPTER_METHODS:
        model = _apply_lora(model, cfg, resolved)
    else:
        _enable_checkpointing(model, cfg, resolved)
    resolved.setdefault("checkpointing", "off")
    # from_pretrained (the QLoRA path) returns a model in eval mode, and a PeftModel wrapper in train mode would
    # keep the workload from switching it: train like a freshly built model (dropout on where the config has it)
    model.train()
    base = model
    if wrap is not None:
        model = wrap(model, cfg, device, resolved)
    optimizer = _optimizer(model, cfg, device, resolved)
    return Trainable(model=model, optimizer=optimizer, resolved=resolved, base=base)
