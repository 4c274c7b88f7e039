"""What a case's SLURM job asks for (CPUs, GPUs, memory, time, nodes, a node of its own), derived from the
launcher settings and the partition's nodes, and checked against them before anything is submitted: a request
no node of the partition can ever hold exits 2 naming the key and the partition's limit, instead of a job left
pending (PartitionConfig) behind a frozen progress bar."""

from __future__ import annotations

from harness.config.case import Case
from harness.config.fields import ConfigError
from harness.config.parallel import LauncherConfig, is_multi_rank
from harness.run.slurm_queue import Node, Partition

# The request's keys, as launcher keys: the job's marker keeps them, and a rerun whose request differs says so.
REQUEST_KEYS = ("cpus_per_task", "gpus_per_node", "mem_gb", "timeout_min", "nodes", "exclusive", "partition")


def wants_gpus(case: Case, launcher: LauncherConfig, part: Partition | None) -> int:
    """GPUs per node: launcher.gpus_per_node, else one per rank on CUDA; device=auto takes GPUs where the
    partition has them and none where it has none (auto runs on the CPU there)."""
    if launcher.gpus_per_node is not None:
        return launcher.gpus_per_node
    parallel = case.config.parallel
    device = case.config.device.name
    if device == "cpu" or (device == "auto" and part is not None and not any(n.gpus for n in part.nodes)):
        return 0
    return parallel.nproc if is_multi_rank(case.config) else 1


def _cpus_per_gpu(nodes: list[Node]) -> int:
    """The CPUs an ordinary share of a GPU node holds: its CPUs over its GPUs, on the least endowed GPU node."""
    return max(1, min(n.cpus // n.gpus for n in nodes if n.gpus))


def default_cpus(gpus: int, part: Partition) -> int:
    """launcher.cpus_per_task when null: the partition's CPUs per GPU times the job's GPUs, or for a CPU case the
    CPUs of its smallest node (a CPU case is timed on every core of a node it holds alone)."""
    if gpus and any(n.gpus for n in part.nodes):
        return _cpus_per_gpu(part.nodes) * gpus
    return min((n.cpus for n in part.nodes), default=1)


def job_request(case: Case, launcher: LauncherConfig, part: Partition | None) -> dict:
    """The request of the case's job. `part` is None off SLURM (launcher=submitit_local): nothing to derive from,
    and a null cpus_per_task stays null."""
    gpus = wants_gpus(case, launcher, part)
    cpus = launcher.cpus_per_task
    if cpus is None and part is not None:
        cpus = default_cpus(gpus, part)
    return {
        "cpus_per_task": cpus,
        "gpus_per_node": gpus,
        "mem_gb": launcher.mem_gb,
        "timeout_min": launcher.timeout_min,
        "nodes": case.config.parallel.nnodes,
        "exclusive": bool(launcher.exclusive),
        "partition": part.name if part is not None else launcher.partition,
    }


def _largest(values: list[int], cap: int | None) -> int:
    top = max(values, default=0)
    return top if cap is None else min(top, cap)


def check_request(request: dict, part: Partition, launcher: LauncherConfig) -> None:
    """ConfigError (exit 2) for a request the partition can never run, naming the key and the limit."""
    where = f"partition {part.name}"
    if part.state.upper() not in ("UP", ""):
        raise ConfigError("launcher.partition", f"{where} is {part.state} (scontrol show partition); choose another")
    if not part.nodes:
        raise ConfigError("launcher.partition", f"{where} has no nodes (sinfo -p {part.name})")
    gpus = request["gpus_per_node"]
    most_gpus = max(n.gpus for n in part.nodes)
    if gpus > most_gpus:
        why = "launcher.gpus_per_node" if launcher.gpus_per_node is not None else "one per rank on CUDA"
        raise ConfigError(
            "launcher.gpus_per_node",
            f"the job asks {gpus} GPU(s) per node ({why}); {where}'s nodes have at most {most_gpus} (sinfo %G)"
            + ("; set device=cpu for a CPU case, or choose a GPU partition" if not most_gpus else ""),
        )
    able = [n for n in part.nodes if n.gpus >= gpus]  # the nodes that hold its GPUs
    cpus = _largest([n.cpus for n in able], part.max_cpus_per_node)
    if request["cpus_per_task"] is not None and request["cpus_per_task"] > cpus:
        raise ConfigError(
            "launcher.cpus_per_task",
            f"asks {request['cpus_per_task']} CPUs per job; the largest node of {where}"
            + (f" with {gpus} GPU(s)" if gpus else "")
            + f" has {cpus} (sinfo, MaxCPUsPerNode); ask at most {cpus}",
        )
    mem_mb = _largest([n.mem_mb for n in able], part.max_mem_per_node_mb)
    if request["mem_gb"] is not None and request["mem_gb"] * 1024 > mem_mb:
        raise ConfigError(
            "launcher.mem_gb",
            f"asks {request['mem_gb']} GB per job; {where}'s largest node holds {mem_mb} MB (sinfo, MaxMemPerNode); "
            f"ask at most {mem_mb // 1024}",
        )
    if part.max_time_min is not None and request["timeout_min"] > part.max_time_min:
        raise ConfigError(
            "launcher.timeout_min",
            f"asks {request['timeout_min']} min; {where}'s MaxTime is {part.max_time_min} min; "
            f"ask at most {part.max_time_min}",
        )
    if request["nodes"] > len(part.nodes):
        raise ConfigError("parallel.nnodes", f"asks {request['nodes']} nodes; {where} has {len(part.nodes)}")


def changes(before: dict | None, now: dict) -> list[str]:
    """`key: old -> new` for each request key that differs (none where the earlier request is not known)."""
    if not before:
        return []
    return [f"{k}: {before.get(k)} -> {now.get(k)}" for k in REQUEST_KEYS if before.get(k) != now.get(k)]
