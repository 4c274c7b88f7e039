"""What a multi-rank case measured: each rank's figures under `metrics.ranks[]`, and the aggregate a reader
compares with a single-device record: the slowest rank's times, the largest rank's memory. The record is made of
it like any other (harness/records/build.py).

Also the files the ranks and the case's process exchange (harness/measure/ranks.py, harness/measure/launch.py),
named once here. No torch."""

from __future__ import annotations

from pathlib import Path

from harness.config.groups import BenchConfig
from harness.predict.sharded import rank_memory
from harness.records.outcome import ERROR, OK, OOM, Measurement

CASE_FILE = "case.pickle"  # the planned case, from the case's process to every rank
MEASUREMENT_FILE = "measurement.json"  # rank 0's gathered figures, back to the case's process


def stage_file(exchange: Path, rank: int) -> Path:
    return exchange / f"rank-{rank}.stage"


def error_file(exchange: Path, rank: int) -> Path:
    return exchange / f"rank-{rank}.error.json"


def pid_file(exchange: Path, rank: int) -> Path:
    return exchange / f"rank-{rank}.pid"


# A rank's figures kept in the record beside the aggregate: its times, its memory by category and its device peaks
RANK_MEMORY_KEYS = (
    "params_bytes",
    "grads_bytes",
    "optimizer_bytes",
    "optimizer_bytes_direct",
    "activations_bytes",
    "temp_bytes",
    "peak_step_bytes",
    "peak_infer_bytes",
    "rss_peak_bytes",
    "torch_max_allocated_bytes",
    "torch_max_reserved_bytes",
    "nvml_process_bytes",
    "fsdp",
    "ddp_bucket_bytes",
)


def _rank_entry(payload: dict, config: BenchConfig, device_type: str) -> dict:
    metrics = payload["metrics"]
    memory = metrics.get("memory") or {}
    predicted = rank_memory(config, device_type, payload["rank"]) or {}
    return {
        "rank": payload["rank"],
        "local_rank": payload["local_rank"],
        "node_rank": payload["node_rank"],
        "host": payload["host"],
        "time": {phase: stats["median_s"] for phase, stats in metrics["time"].items()},
        "noisy": sorted(p for p, stats in metrics["time"].items() if stats.get("noisy")),
        "compute_ratio": metrics["compute_ratio"],
        "memory": {k: memory[k] for k in RANK_MEMORY_KEYS if k in memory},
        "predicted_memory": {
            k: (predicted.get("allocated") or {}).get(k, predicted.get(k))
            for k in ("params_bytes", "grads_bytes", "optimizer_bytes", "fsdp_gathered_bytes", "ddp_bucket_bytes")
            if k in predicted
        },
        "checks_failed": [c["name"] for c in payload["checks"] if not c["passed"]],
    }


def aggregate(payloads: list[dict], config: BenchConfig) -> tuple[dict, dict, list, dict]:
    """(metrics, resolved, checks, provenance) of the record: the slowest rank's timing (its step median is the
    step time of the whole job), the largest rank's memory, rank 0's resolved values and provenance, and every
    rank's checks with the rank in their name."""
    payloads = sorted(payloads, key=lambda p: p["rank"])
    device_type = payloads[0]["provenance"].get("device_type") or "cpu"
    slowest = max(payloads, key=lambda p: p["metrics"]["time"]["step"]["median_s"])
    metrics = dict(slowest["metrics"])
    with_memory = [p for p in payloads if p["metrics"].get("memory")]
    if with_memory:
        largest = max(with_memory, key=lambda p: p["metrics"]["memory"]["peak_step_bytes"])
        metrics["memory"] = largest["metrics"]["memory"]
        metrics["memory_rank"] = largest["rank"]
    metrics["time_rank"] = slowest["rank"]
    world = len(payloads)
    step_s = metrics["time"]["step"]["median_s"]
    batch, seq = config.workload.batch_size, config.workload.seq_len
    # every rank steps its own batch in the slowest rank's time
    metrics["throughput"] = {
        **metrics["throughput"],
        "global_step_samples_per_s": world * batch / step_s,
        "global_step_tokens_per_s": world * batch * seq / step_s,
    }
    metrics["ranks"] = [_rank_entry(p, config, device_type) for p in payloads]
    warnings = sorted({w for p in payloads for w in p["metrics"].get("warnings", [])})
    if warnings:
        metrics["warnings"] = warnings
    checks = [
        {**c, "name": f"{c['name']}@rank{p['rank']}"} if p is not slowest else c
        for p in payloads
        for c in p["checks"]
        if p is slowest or not c["passed"]
    ]
    resolved = dict(payloads[0]["resolved"])
    resolved.update({"world_size": world, "global_batch_size": world * batch, "batch_size_per_rank": batch})
    return metrics, resolved, checks, payloads[0]["provenance"]


def gathered_ranks(config: BenchConfig, payloads: list[dict], distributed: dict) -> Measurement:
    """The measurement of a multi-rank case that ran to the end."""
    metrics, resolved, checks, prov = aggregate(payloads, config)
    prov = {**prov, "distributed": {**distributed, "hosts": sorted({p["host"] for p in payloads})}}
    return Measurement(OK, prov, metrics=metrics, resolved=resolved, checks=checks)


def failed_ranks(
    provenance: dict, failures: list[dict], stages: dict[int, str], how: str | None, timed_out: bool
) -> Measurement:
    """What a multi-rank case that did not finish leaves: `how` it ended where the case's process ended it
    (its time limit) or torchrun left no rank's error, else the rank that failed first (an oom record if it ran
    out of memory); with where each rank was."""
    where = ", ".join(f"rank {r}: {s}" for r, s in sorted(stages.items())) or "no rank reported a stage"
    if failures and how is None:
        first = min(failures, key=lambda f: (f.get("at_unix_s", 0), f["rank"]))
        others = sorted(f["rank"] for f in failures if f is not first)
        message = f"rank {first['rank']} failed in stage {first['phase']!r}: {first['type']}: {first['message']}"
        if others:
            message += f" (ranks {others} failed too)"
        error = {"type": first["type"], "message": message[:2000], "phase": first["phase"], "rank": first["rank"]}
        if first.get("oom"):
            oom = {"oom": {**first.get("figures", {}), "budget_emulated": False, "rank": first["rank"]}}
            return Measurement(OOM, provenance, metrics=oom, error=error)
        error["traceback"] = first.get("traceback")
    else:
        error = {
            "type": "CaseTimeout" if timed_out else "RanksFailed",
            "message": f"{how}; where the ranks were: {where}",
            "phase": None,
        }
    error["rank_stages"] = {str(r): s for r, s in sorted(stages.items())}
    return Measurement(ERROR, provenance, error=error)
