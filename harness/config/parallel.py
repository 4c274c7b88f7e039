"""More than one rank, and more than this machine: the `parallel` and `launcher` config groups, their rules, and
the facts about ranks every room shares (the backend a device uses, the world size). No torch.

`parallel` is part of what a case measures (it is in the record's config and, unless it is `none`, in its hash);
`launcher` is only how the cases of a sweep are started, so it is kept out of both: the same case gives the same
record whether it ran here or as a SLURM job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from harness.config.fields import doc, positive_int, require

if TYPE_CHECKING:  # annotations only: groups.py imports this module
    from harness.config.groups import BenchConfig

PARALLEL_STYLES = ("none", "ddp", "fsdp")
LAUNCHERS = ("local", "submitit_local", "slurm")
# FSDP2 casts parameters for compute through its MixedPrecisionPolicy, not autocast: the precisions it runs.
FSDP_PRECISIONS = ("fp32", "bf16", "amp_bf16")
BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # torch.distributed's backend for each device type
# Seconds of a SLURM job's time limit kept back from the case inside: the job's start-up before the case, and
# ending the case and writing its CaseTimeout record before the scheduler kills the job (harness/run/jobs.py).
JOB_END_MARGIN_S = 30
# Seconds a case may run inside its SLURM job, set by the job for the case's process when shorter than the case's
# own measure.case_timeout_s (kept out of the config: the case's hash is the same wherever it runs).
JOB_LIMIT_ENV = "BENCH_JOB_LIMIT_S"


@dataclass
class ParallelConfig:
    name: str = doc(
        "none (one process) | ddp (DistributedDataParallel: a full replica per rank) | fsdp (FSDP2 fully_shard: "
        "parameters, gradients and optimizer state sharded across ranks).",
        "none",
    )
    nproc: int = doc("Ranks on each node (torchrun --nproc-per-node); one device per rank on CUDA.", 1)
    nnodes: int = doc("Nodes (torchrun --nnodes); more than 1 needs launcher=slurm.", 1)
    reshard_after_forward: bool = doc(
        "fsdp: free each unit's gathered parameters after its forward (true, ZeRO-3-like) or keep them until its "
        "backward (false, ZeRO-2-like).",
        True,
    )


@dataclass
class LauncherConfig:
    name: str = doc(
        "local (cases one after another in this command) | submitit_local (each case a submitit job on this "
        "machine) | slurm (each case a SLURM job through submitit).",
        "local",
    )
    partition: Optional[str] = doc("slurm: the partition (sbatch --partition).", None)
    account: Optional[str] = doc("slurm: the account to charge (sbatch --account).", None)
    qos: Optional[str] = doc("slurm: quality of service (sbatch --qos).", None)
    gpus_per_node: Optional[int] = doc(
        "slurm: GPUs per job; null = parallel.nproc on CUDA cases (device=auto: where the partition has GPUs), 0 on "
        "CPU.",
        None,
    )
    cpus_per_task: Optional[int] = doc(
        "slurm: CPU cores per job; null = the partition's CPUs per GPU x the job's GPUs (a CPU case: every core of "
        "its smallest node). Torch's threads follow it.",
        None,
    )
    mem_gb: Optional[int] = doc("slurm: host memory per job in GB; null = the partition's default.", None)
    timeout_min: int = doc(
        "Minutes a job may run before the scheduler ends it; the case inside is ended "
        f"{JOB_END_MARGIN_S} s before (or at measure.case_timeout_s, if sooner), with a CaseTimeout record.",
        60,
    )
    exclusive: bool = doc(
        "slurm: each job holds its node alone (sbatch --exclusive), so no other job runs beside a timed case; "
        "false shares the node, and its records say so (provenance.slurm.exclusive: false).",
        True,
    )
    folder: Optional[str] = doc("Where submitit keeps job scripts and logs; null = <output_dir>/jobs.", None)


def world_size(cfg: BenchConfig) -> int:
    """Ranks in all: 1 for a single-process case."""
    if not is_multi_rank(cfg):
        return 1
    return cfg.parallel.nproc * cfg.parallel.nnodes


def is_multi_rank(cfg: BenchConfig) -> bool:
    return cfg.parallel.name != "none"


def validate_parallel(cfg: BenchConfig) -> None:
    """The combinations that cannot run, each named by its key (exit 2 before anything starts)."""
    parallel = cfg.parallel
    require(
        parallel.name in PARALLEL_STYLES,
        "parallel",
        f"unknown style {parallel.name!r}; allowed: {', '.join(PARALLEL_STYLES)}",
    )
    positive_int(parallel.nproc, "parallel.nproc")
    positive_int(parallel.nnodes, "parallel.nnodes")
    if parallel.name == "none":
        require(
            parallel.nproc == 1 and parallel.nnodes == 1,
            "parallel.nproc",
            "more than one rank needs parallel=ddp or parallel=fsdp; with parallel=none nproc and nnodes are 1",
        )
        return
    require(
        cfg.device.memory_budget_gib is None,
        "device.memory_budget_gib",
        "an emulated budget applies to one process; run multi-rank cases without it",
    )
    require(
        not cfg.measure.gradients,
        "measure.gradients",
        "the gradient diagnostics (a float64 copy, finite differences) run in one process; use parallel=none",
    )
    if parallel.name == "fsdp":
        require(
            cfg.method.name not in ("qlora", "adamw8bit"),
            "method",
            f"{cfg.method.name} keeps bitsandbytes storage (4-bit weights / 8-bit state) that FSDP2 does not shard "
            "here; allowed with parallel=fsdp: full_adamw, lora, sgd (or use parallel=ddp)",
        )
        require(
            cfg.precision.name in FSDP_PRECISIONS,
            "precision",
            f"{cfg.precision.name!r} with parallel=fsdp: FSDP2's mixed precision casts to bf16 without a grad "
            f"scaler; allowed: {', '.join(FSDP_PRECISIONS)}",
        )


def validate_launcher(launcher: LauncherConfig, nnodes: int = 1) -> None:
    require(
        launcher.name in LAUNCHERS, "launcher", f"unknown launcher {launcher.name!r}; allowed: {', '.join(LAUNCHERS)}"
    )
    positive_int(launcher.timeout_min, "launcher.timeout_min")
    if launcher.cpus_per_task is not None:
        positive_int(launcher.cpus_per_task, "launcher.cpus_per_task")
    if launcher.mem_gb is not None:
        positive_int(launcher.mem_gb, "launcher.mem_gb")
    if launcher.gpus_per_node is not None:
        require(
            isinstance(launcher.gpus_per_node, int) and launcher.gpus_per_node >= 0,
            "launcher.gpus_per_node",
            f"must be an integer >= 0, got {launcher.gpus_per_node!r}",
        )
    require(
        nnodes == 1 or launcher.name == "slurm",
        "parallel.nnodes",
        f"{nnodes} nodes need launcher=slurm (launcher={launcher.name} runs on this machine only)",
    )


def fsdp_chunk_rows(rows: int, world: int) -> int:
    """Rows of dim 0 each rank holds under FSDP2: torch.chunk's chunk size, ceil(rows / world)."""
    return -(-rows // world)


def fsdp_padded_numel(shape: tuple[int, ...], world: int) -> int:
    """Elements of a parameter's shard as FSDP2 stores it: every rank's shard padded to the chunk size on dim 0,
    so that one all-gather of equal pieces rebuilds the parameter (the padding rule)."""
    rest = 1
    for d in shape[1:]:
        rest *= d
    return fsdp_chunk_rows(shape[0], world) * rest


def fsdp_local_numel(shape: tuple[int, ...], world: int, rank: int) -> int:
    """Elements of rank `rank`'s unpadded shard (what a DTensor's local tensor and the optimizer state hold): the
    last ranks get a shorter chunk, or none, when dim 0 does not divide."""
    chunk = fsdp_chunk_rows(shape[0], world)
    rows = max(0, min(chunk, shape[0] - rank * chunk))
    rest = 1
    for d in shape[1:]:
        rest *= d
    return rows * rest
