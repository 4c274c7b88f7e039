"""The analytic model: what a configuration should cost, from its shapes alone (no torch, no measurement).

Plain functions of the typed config (harness/config/groups.BenchConfig; a record's stored `config` is read back
with BenchConfig.from_dict). Each prediction says which
formula it used, so a disagreement with the measurement points at a term. Sources: harness/REFERENCES.md
(Kaplan 2020 for 6N, Korthikanti 2022 for the activation method, Dettmers 2021/2023 for 8-bit state and NF4,
Hu 2021 for LoRA). Parameters and state: harness/predict/parameters.py; activations: harness/predict/activations.py;
FLOP ratios, the prediction a record carries and its comparison with the measurement: here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness import families
from harness.config.rules import ADAPTER_METHODS
from harness.predict.activations import activation_bytes, activations, checkpoint_segments, transformer_block
from harness.predict.activations_hf import logits_shape
from harness.predict.parameters import (
    adamw8bit_state_bytes,
    lora_parameter_count,
    lora_targets,
    memory,
    nf4_bytes,
    parameter_tensors,
)
from harness.predict.sharded import compute_config, rank_memory

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

# The analytic model's public names, wherever they are computed: callers read them from here.
__all__ = [
    "activation_bytes",
    "activations",
    "adamw8bit_state_bytes",
    "checkpoint_segments",
    "compare",
    "flop_ratio",
    "lora_parameter_count",
    "lora_targets",
    "memory",
    "nf4_bytes",
    "parameter_tensors",
    "predict",
    "TOLERANCE",
]


def flop_ratio(cfg: BenchConfig) -> dict:
    """FLOPs of forward+backward over forward, as FlopCounterMode counts them (matmuls and attention), by the
    formula the model's family names (mlp_flop_ratio, transformer_flop_ratio).

    Full training: backward = 2 x forward (input and weight gradients) for every matmul whose input needs a
    gradient. Checkpointing adds the recomputed forwards: +1 forward of every checkpointed layer (Narayanan et al.).
    """
    if cfg.method.name in ADAPTER_METHODS:
        return {"flop_ratio": None, "formula": "not modelled: adapter terms (frozen base: about 2 x forward)"}
    return families.of(cfg.model).flop_ratio(cfg)


def mlp_flop_ratio(cfg: BenchConfig) -> dict:
    """The mlp's first layer has no input gradient, hence 3 - 1/depth."""
    depth = cfg.model.depth
    ratio = 3 - 1 / depth
    if cfg.checkpointing.enabled:
        k = min(checkpoint_segments(cfg), depth)
        ratio += (k - 1) * (depth // k) / depth
    return {"flop_ratio": ratio, "formula": "3 - 1/depth (+ recomputed layers / depth)"}


def transformer_flop_ratio(cfg: BenchConfig) -> dict:
    """A decoder's first matmuls read the embedding output, which needs a gradient for the embedding table, so 3
    exactly (Kaplan's 6N/2N); the linears counted are those inside the decoder layers of the model itself."""
    block = transformer_block(cfg.model)[0]
    b, seq = cfg.workload.batch_size, cfg.workload.seq_len
    t = b * seq
    weights = sum(p.numel for p in parameter_tensors(cfg) if p.in_layer and p.linear_in) // block.layers
    linear = 2 * t * weights
    attention = 2 * 2 * b * block.heads * seq * seq * block.head_dim  # q k^T and probs v, every s x s entry
    layer = linear + attention  # (non-causal count)
    rows, width = logits_shape(block, b, seq)
    head = 2 * rows * block.hidden * width
    forward = block.layers * layer + head
    backward = 2 * forward
    if cfg.checkpointing.enabled:
        # recomputation stops at the last tensor a layer saves (torch.utils.checkpoint's early stop): in a
        # llama-like block that is down_proj's input, so down_proj itself is never recomputed
        skipped = 2 * t * block.hidden * block.ff if block.style == "llama" else 0
        backward += block.layers * (layer - skipped)
    return {
        "flop_ratio": (forward + backward) / forward,
        "formula": "3 (+ layers' forward but the last linear / total forward with checkpointing); attention non-causal",
    }


# How far a measurement may sit from its prediction before the record says they disagree. Byte counts of
# parameters, gradients and optimizer state are exact up to library constants shared between tensors;
# activations depend on which ops a library version saves; FLOP ratios on what the counter sees.
TOLERANCE = {
    "params_bytes": 0.01,
    "grads_bytes": 0.01,
    "optimizer_bytes": 0.01,
    "activations_bytes": 0.10,
    "flop_ratio": 0.02,
}


# a part of a quantity held to the quantity's tolerance (the paged part of the optimizer state is optimizer state)
_TOLERANCE_OF = {"optimizer_paged_bytes": "optimizer_bytes"}


def predict(cfg: BenchConfig, device_type: str = "cpu", attention_kernel: str | None = None) -> dict:
    """Everything the record carries under `predicted`: `memory` in logical bytes, `memory_allocated` what
    the allocator of `device_type` holds for the same storages (what the tracker measures on that device)."""
    mem = memory(cfg, device_type)
    rank = rank_memory(cfg, device_type, 0)  # a multi-rank case: rank 0's shard is the largest
    if rank is not None:
        mem = {**mem, **rank}
    act = activations(compute_config(cfg), attention_kernel, device_type)
    flops = flop_ratio(cfg)
    out = {
        "memory": {
            "params_bytes": mem["params_bytes"],
            "grads_bytes": mem["grads_bytes"],
            "optimizer_bytes": mem["optimizer_bytes"],
            "activations_bytes": act["activations_bytes"],
        },
        "memory_allocated": {**mem["allocated"], "device_type": device_type},
        "params": {"total": mem["total_params"], "trainable": mem["trainable_params"]},
        "flop_ratio": flops["flop_ratio"],
        "formulas": {"activations_bytes": act["formula"], "flop_ratio": flops["formula"]},
        "tolerance": dict(TOLERANCE),
    }
    if "paged_bytes" in mem:  # a paged optimizer: the part of optimizer_bytes outside PyTorch's allocator
        out["memory"]["optimizer_paged_bytes"] = mem["paged_bytes"]
    if rank is not None:
        out["rank"] = {k: v for k, v in rank.items() if k not in out["memory"] and k != "allocated"}
    return out


def compare(predicted: dict, metrics: dict) -> list[dict]:
    """Predicted against measured, one entry per quantity both have: {name, predicted, measured,
    relative_error, tolerance, agrees}."""
    # the tracker counts what the allocator holds (rounded blocks on CUDA): compare like with like
    allocated = predicted.get("memory_allocated") or {}
    pairs = [
        (k, allocated.get(k, predicted["memory"].get(k)), (metrics.get("memory") or {}).get(k))
        for k in ("params_bytes", "grads_bytes", "optimizer_bytes", "optimizer_paged_bytes", "activations_bytes")
    ]
    pairs.append(("flop_ratio", predicted.get("flop_ratio"), metrics.get("flop_ratio")))
    out = []
    for name, pred, meas in pairs:
        if not isinstance(pred, (int, float)) or not isinstance(meas, (int, float)):
            continue
        error = (meas - pred) / pred if pred else (0.0 if meas == 0 else math.inf)
        tolerance = TOLERANCE[_TOLERANCE_OF.get(name, name)]
        out.append(
            {
                "name": name,
                "predicted": pred,
                "measured": meas,
                "relative_error": error,
                "tolerance": tolerance,
                "agrees": abs(error) <= tolerance,
            }
        )
    return out
