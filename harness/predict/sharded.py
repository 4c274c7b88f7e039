"""The analytic model per rank (no torch): what one rank of a DDP or FSDP2 case holds (REFERENCES.md §2, the
ZeRO accounting; FSDP2's padding rule: harness/config/parallel.py).

- DDP: a full replica per rank (parameters, gradients, optimizer state as in one process) plus its flat
  gradient buckets, one copy of every gradient (gradient_as_bucket_view=False, PyTorch's default).
- FSDP2: every parameter sharded on dim 0, each rank's shard padded to ceil(rows / world) rows; gradients of a
  unit (a block, or the root's rest) reduce-scattered into one padded buffer per unit; optimizer state shaped
  like the rank's unpadded shard; plus, transiently, the parameters of the unit being computed and of the one
  prefetched (the root's stay gathered through the whole forward, whose first op they feed).
- Activations are those of the rank's local batch (workload.batch_size is per rank): the single-process figure.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from harness import families
from harness.config.parallel import fsdp_local_numel, fsdp_padded_numel, is_multi_rank, world_size
from harness.config.rules import ADAPTER_METHODS, WEIGHT_BYTES, adapter_bytes
from harness.predict.allocator import allocated_bytes
from harness.predict.parameters import Tensor, fused_adamw, lora_targets, memory

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig


def _shape(t: Tensor, cfg: BenchConfig) -> tuple[int, int]:
    """(rows, elements per row) of a parameter: a linear weight is (out, in), an embedding table (vocab, hidden),
    a norm or bias one row of one element each."""
    if t.linear_in:
        return t.linear_out, t.linear_in
    if t.name == "embed_tokens":
        hidden = families.of(cfg.model).shape(cfg.model)["hidden_size"]
        return t.numel // hidden, hidden
    return t.numel, 1


def _units(cfg: BenchConfig) -> list[list[tuple[tuple[int, int], int, bool]]]:
    """Each FSDP2 unit's parameters as (shape, element bytes, trainable): one unit per block as the model's family
    groups them (the mlp's blocks, llama's decoder layers; LoRA's A and B inside them), then the root's rest
    (embeddings, final norm, head)."""
    precision = cfg.precision.name
    e = WEIGHT_BYTES[precision]
    adapters = cfg.method.name in ADAPTER_METHODS
    targets = lora_targets(cfg) if adapters else ()
    r = cfg.method.r

    def entries(ts: list[Tensor]) -> list:
        out = []
        for t in ts:
            out.append((_shape(t, cfg), e, not adapters))
            if t.name in targets and t.linear_in:
                a = adapter_bytes(precision)
                out += [((r, t.linear_in), a, True), ((t.linear_out, r), a, True)]
        return out

    return [entries(unit) for unit in families.of(cfg.model).fsdp_units(cfg.model)]


def fsdp_rank_memory(cfg: BenchConfig, device_type: str, rank: int) -> dict:
    world = world_size(cfg)
    units = _units(cfg)
    method = cfg.method.name
    # logical bytes and what the device's allocator holds, per category
    out = {"params_bytes": 0, "grads_bytes": 0, "optimizer_bytes": 0}
    alloc = dict(out)

    def add(category: str, nbytes: int, device: str = device_type) -> None:
        out[category] += nbytes
        alloc[category] += allocated_bytes(nbytes, device)

    step_device = device_type if fused_adamw(cfg, device_type) else "cpu"
    gathered_e = WEIGHT_BYTES["bf16"] if cfg.precision.name == "amp_bf16" else None
    gathered = []
    for unit in units:
        unit_grads = 0
        for shape, e, trainable in unit:
            add("params_bytes", fsdp_padded_numel(shape, world) * e)  # one padded storage per parameter
            if not trainable:
                continue
            unit_grads += fsdp_padded_numel(shape, world) * e
            if method != "sgd":
                state = fsdp_local_numel(shape, world, rank) * e
                add("optimizer_bytes", state)  # exp_avg
                add("optimizer_bytes", state)  # exp_avg_sq
                add("optimizer_bytes", 4, step_device)  # step
        if unit_grads:
            add("grads_bytes", unit_grads)  # the unit's reduce-scatter output: its gradients are views of it
        # gathered whole in the compute dtype, each parameter padded as its shards are (world x padded shard)
        gathered.append(sum(world * fsdp_padded_numel(shape, world) * (gathered_e or e) for shape, e, _ in unit))
    blocks, root = gathered[:-1], gathered[-1]
    # reshard_after_forward: the root unit held through the forward, the block computed and the one prefetched;
    # without it, every block stays gathered from its forward to its backward. FSDP2 can hold one more unit for
    # a moment (its all-gather output beside the parameters being copied out of it): measured, not predicted.
    held = 2 * max(blocks, default=0) if cfg.parallel.reshard_after_forward else sum(blocks)
    return {
        **out,
        "allocated": alloc,
        "fsdp_gathered_bytes": root + held,
        "formula": "FSDP2: padded shards (ceil(rows / world) rows); grads one padded buffer per unit; "
        "optimizer state on the unpadded local shard",
    }


def ddp_rank_memory(cfg: BenchConfig, device_type: str) -> dict:
    single = memory(cfg, device_type)
    return {
        **{k: single[k] for k in ("params_bytes", "grads_bytes", "optimizer_bytes")},
        "allocated": single["allocated"],
        "ddp_bucket_bytes": single["grads_bytes"],
        "formula": "DDP: a full replica; buckets hold one more copy of every gradient",
    }


def rank_memory(cfg: BenchConfig, device_type: str, rank: int) -> dict | None:
    """What rank `rank` of a multi-rank case holds (None for a single-process case)."""
    if not is_multi_rank(cfg):
        return None
    if cfg.parallel.name == "ddp":
        return ddp_rank_memory(cfg, device_type)
    return fsdp_rank_memory(cfg, device_type, rank)


def compute_config(cfg: BenchConfig) -> BenchConfig:
    """The config whose activations a rank holds: under FSDP2, amp_bf16 is its mixed-precision policy, which
    gathers parameters (adapters included) in bf16 and computes like pure bf16, without autocast's fp32 ops."""
    if cfg.parallel.name == "fsdp" and cfg.precision.name == "amp_bf16":
        return dataclasses.replace(cfg, precision=dataclasses.replace(cfg.precision, name="bf16"))
    return cfg
