"""One rank of a multi-rank case: its process group, the model wrapped by PyTorch's own engines (DDP, FSDP2's
fully_shard) before the optimizer is made, and what only a rank can say about its memory.

Every rank runs the matched workload on its own batch (workload.batch_size is per rank)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule

from harness.config.groups import BenchConfig
from harness.config.parallel import BACKENDS, fsdp_padded_numel
from harness.predict.allocator import allocated_bytes


@dataclass(frozen=True)
class RankInfo:
    rank: int
    local_rank: int
    world_size: int
    backend: str
    node_rank: int


def rank_from_environment() -> RankInfo:
    """What torchrun tells each worker through its environment."""
    return RankInfo(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        backend="",  # known once the process group is up (init_process_group)
        node_rank=int(os.environ.get("GROUP_RANK", "0")),
    )


def init_process_group(device: torch.device, timeout_s: float | None) -> RankInfo:
    """gloo on CPU, NCCL on CUDA (one device per rank); collectives give up after the case's time limit, so a
    rank waiting for a dead peer ends instead of hanging the sweep."""
    info = rank_from_environment()
    backend = BACKENDS[device.type]
    kwargs: dict[str, Any] = {"backend": backend}
    if timeout_s is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    return dataclasses.replace(info, backend=backend)


def close_process_group() -> None:
    # recent torch aborts ranks at exit unless every rank passes a barrier before the group is destroyed
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor this rank holds: a DTensor's local shard (a view of its storage), else the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


def is_fsdp(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated units FSDP2 shards one by one (and gathers one at a time): the mlp's blocks, a decoder's
    layers; whatever else the model holds (embeddings, final norm, head) belongs to the root unit."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(base, "layers", None)
    if layers is None:
        layers = base.get_decoder().layers
    return list(layers)


def wrap(model: nn.Module, cfg: BenchConfig, device: torch.device, resolved: dict) -> nn.Module:
    """The model as the parallel style trains it; called before the optimizer is made (FSDP2 replaces each
    parameter by a sharded DTensor, which the optimizer must hold)."""
    style = cfg.parallel.name
    if style == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        resolved["parallel"] = "torch.nn.parallel.DistributedDataParallel(broadcast_buffers=False), default buckets"
        # no buffer changes during training here (rotary tables are constants): nothing to broadcast per forward
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    reshard = cfg.parallel.reshard_after_forward
    if cfg.precision.name == "amp_bf16":
        # FSDP2's mixed precision: bf16 gathered parameters and compute, gradients reduced in fp32 (no autocast)
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        resolved["mixed_precision"] = "FSDP2 MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32), no autocast"
    else:
        policy = MixedPrecisionPolicy()
    units = blocks(model)
    for unit in units:
        fully_shard(unit, reshard_after_forward=reshard, mp_policy=policy)
    fully_shard(model, reshard_after_forward=reshard, mp_policy=policy)
    resolved["parallel"] = (
        f"torch.distributed.fsdp.fully_shard on each of {len(units)} blocks and the root, "
        f"reshard_after_forward={reshard}"
    )
    return model


def forward_only(model: nn.Module) -> Callable[[], contextlib.AbstractContextManager]:
    """The context for a training forward that no backward follows (fwd_train): DDP must not prepare a gradient
    reduction for it, or its next forward fails waiting for one; FSDP2 and single-process models need nothing."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync if no_sync is not None and not is_fsdp(model) else contextlib.nullcontext


def units(model: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters of each unit FSDP2 gathers and reduces together: each block's, then the root's (the rest)."""
    out = [list(block.parameters()) for block in blocks(model)]
    in_blocks = {id(p) for unit in out for p in unit}
    out.append([p for p in model.parameters() if id(p) not in in_blocks])
    return out


def fsdp_grad_bytes(model: nn.Module) -> int:
    """This rank's gradient bytes under FSDP2 by its padding rule: each unit's gradients are views of one
    reduce-scatter output holding every trainable parameter's padded shard, in the parameter's dtype (fp32 under
    the mixed-precision policy too), one storage per unit as the allocator holds it."""
    world = dist.get_world_size()
    total = 0
    for unit in units(model):
        trainable = [p for p in unit if p.requires_grad]
        if trainable:
            nbytes = sum(fsdp_padded_numel(tuple(p.shape), world) * p.element_size() for p in trainable)
            total += allocated_bytes(nbytes, trainable[0].device.type)
    return total


def ddp_bucket_bytes(model: nn.Module) -> int | None:
    """Bytes of DDP's flat gradient buckets (allocated by its C++ reducer, which no Python tracker sees), from
    DDP's own logging data; None for other models."""
    getter = getattr(model, "_get_ddp_logging_data", None)
    if getter is None:
        return None
    sizes = getter().get("bucket_sizes")
    if isinstance(sizes, str):  # a comma-separated list in the logging data
        sizes = [int(s) for s in sizes.split(",") if s.strip()]
    return int(sum(sizes)) if sizes else None
