"""What SLURM itself says, through its own commands: the state of jobs (squeue, then sacct for the ones the
controller no longer holds), cancelling them (scancel), and what a partition's nodes can hold (scontrol show
partition, sinfo). No submitit: its state comes from accounting alone, where a job freshly queued is not listed
yet (submitit's UNKNOWN), and a case whose job is merely not in accounting yet must never be submitted twice.

Every command has a time limit; a command that fails or times out raises SlurmUnavailable — a scheduler that
does not answer says nothing about a job, so it is never read as "the job ended"."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

COMMAND_TIMEOUT_S = 30.0
# squeue's states of a job that may still run (every other state is an end: COMPLETED, FAILED, CANCELLED,
# TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE, REVOKED, SPECIAL_EXIT).
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    }
)
# Pending reasons that no waiting resolves: the request exceeds what the partition or account allows.
HOPELESS_REASONS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "QOSMaxCpuPerJobLimit",
        "QOSMaxGRESPerJob",
        "QOSMaxWallDurationPerJobLimit",
        "AssocMaxWallDurationPerJobLimit",
        "ReqNodeNotAvail",
        "PartitionDown",
        "PartitionInactive",
    }
)
GONE = "GONE"  # known to neither the controller nor accounting: purged after it ended (MinJobAge)


class SlurmUnavailable(RuntimeError):
    """A SLURM command could not be run or did not answer."""


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # squeue's / sacct's state (CANCELLED by 0 is read as CANCELLED), or GONE
    reason: str | None = None  # why it is pending (Priority, Resources, ...), or None
    node: str | None = None
    name: str | None = None
    elapsed: str | None = None
    alloc: str | None = None  # sacct's AllocTRES: what the job held (cpu=2,mem=...,gres/gpu=1)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def hopeless(self) -> bool:
        return self.state == "PENDING" and self.reason in HOPELESS_REASONS

    def describe(self) -> str:
        if self.state == "PENDING":
            return f"pending ({self.reason})" if self.reason else "pending"
        if self.state == "RUNNING":
            return f"running on {self.node}" if self.node else "running"
        if self.state == GONE:
            return "ended (no longer known to SLURM)"
        return self.state.lower()


def _run(command: list[str], ok_errors: tuple[str, ...] = ()) -> str:
    if shutil.which(command[0]) is None:
        raise SlurmUnavailable(f"{command[0]} is not on PATH (launcher=slurm needs SLURM's commands)")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"`{' '.join(command)}` did not answer in {COMMAND_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        if any(text in done.stderr for text in ok_errors):
            return ""
        raise SlurmUnavailable(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _squeue(job_ids: list[str]) -> dict[str, JobState]:
    # -t all: jobs that ended a moment ago are still the controller's (for MinJobAge), with their end state
    out = _run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%N|%j|%M"],
        ok_errors=("Invalid job id",),  # a single id the controller no longer holds
    )
    found = {}
    for line in out.splitlines():
        job_id, state, reason, node, name, elapsed = (line.split("|") + [""] * 6)[:6]
        found[job_id] = JobState(job_id, state, None if reason in ("", "None") else reason, node or None, name, elapsed)
    return found


def _sacct(job_ids: list[str]) -> dict[str, JobState]:
    out = _run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,NodeList,JobName,Elapsed,AllocTRES"]
    )
    found = {}
    for line in out.splitlines():
        job_id, state, node, name, elapsed, alloc = (line.split("|") + [""] * 6)[:6]
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0"
        node = None if node in ("", "None assigned") else node
        found[job_id] = JobState(job_id, state, None, node, name, elapsed, alloc or None)
    return found


def job_states(job_ids: list[str]) -> dict[str, JobState]:
    """The state of each job: the controller's (squeue) while it holds the job — from the moment sbatch returns
    its id — then accounting's (sacct); a job known to neither ended long enough ago to be purged (GONE)."""
    job_ids = sorted(set(job_ids))
    if not job_ids:
        return {}
    states = _squeue(job_ids)
    rest = [j for j in job_ids if j not in states]
    if rest:
        states.update(_sacct(rest))
    for job_id in job_ids:
        states.setdefault(job_id, JobState(job_id, GONE))
    return states


def accounting(job_ids: list[str]) -> dict[str, JobState]:
    """What accounting holds about jobs (what they were allocated, how long they ran); empty where it has none."""
    return _sacct(sorted(set(job_ids))) if job_ids else {}


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass(frozen=True)
class Partition:
    name: str
    state: str
    max_time_min: int | None  # None: no limit
    max_cpus_per_node: int | None
    max_mem_per_node_mb: int | None
    nodes: list[Node] = field(default_factory=list)


def parse_minutes(text: str) -> int | None:
    """SLURM's time format (MaxTime, --time): [days-]hours:minutes:seconds, minutes:seconds or minutes, rounded up
    to whole minutes; UNLIMITED / INFINITE / NONE -> None."""
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts = parts + [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


_GPU = re.compile(r"gpu(?::[^:,(]+)?:(\d+)")


def gpu_count(gres: str) -> int:
    """GPUs in sinfo's %G (gpu:8, gpu:a100:4(S:0-1), gpu:a100:4,gpu:v100:2, (null))."""
    return sum(int(n) for n in _GPU.findall(gres))


def _limit(value: str | None) -> int | None:
    return None if value is None or value.upper() == "UNLIMITED" else int(value)


def partitions() -> dict[str, dict[str, str]]:
    """Every partition's `scontrol show partition` fields, by name."""
    out = _run(["scontrol", "show", "partition", "-o"])
    found = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "PartitionName" in fields:
            found[fields["PartitionName"]] = fields
    return found


def partition(name: str | None) -> Partition:
    """The partition a job goes to (the default one when `name` is None), with its nodes; KeyError names the
    partitions there are."""
    known = partitions()
    if name is None:
        name = next((n for n, f in known.items() if f.get("Default") == "YES"), None)
        if name is None:
            raise KeyError(f"there is no default partition; partitions: {', '.join(known) or 'none'}")
    if name not in known:
        raise KeyError(f"there is no partition {name!r}; partitions: {', '.join(known) or 'none'}")
    fields = known[name]
    nodes = []
    for line in _run(["sinfo", "-h", "-N", "-p", name, "-o", "%N|%c|%m|%G"]).splitlines():
        node, cpus, mem, gres = (line.split("|") + [""] * 4)[:4]
        nodes.append(Node(node, int(cpus.rstrip("+")), int(mem.rstrip("+")), gpu_count(gres)))
    return Partition(
        name=name,
        state=fields.get("State", "UP"),
        max_time_min=parse_minutes(fields.get("MaxTime", "UNLIMITED")),
        max_cpus_per_node=_limit(fields.get("MaxCPUsPerNode")),
        max_mem_per_node_mb=_limit(fields.get("MaxMemPerNode")),
        nodes=nodes,
    )
