"""The program torchrun starts on every rank of a multi-rank case: `python -m harness.measure.ranks EXCHANGE`.

Each rank measures the case on its own batch (harness/measure/case.py with the model wrapped for DDP or FSDP2),
then rank 0 gathers every rank's figures and writes the one measurement into EXCHANGE. A rank that fails writes what
failed into EXCHANGE and exits non-zero, which makes torchrun end the others; each rank keeps the stage it is in
in a file there, so the case's process can say where a hung rank stopped (harness/measure/launch.py)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from harness.config.case import Case
from harness.config.groups import BenchConfig
from harness.measure import faults, provenance, sharding
from harness.measure.case import Stage, measure_case, resolve_device
from harness.records.io import replace_file
from harness.records.ranks import CASE_FILE, MEASUREMENT_FILE, error_file, gathered_ranks, pid_file, stage_file


def load_case(exchange: Path) -> Case:
    """The planned case the case's process left in EXCHANGE (written by it moments ago: not foreign data)."""
    return pickle.loads((exchange / CASE_FILE).read_bytes())


class RankTerminated(Exception):
    """SIGTERM reached this rank: torchrun stopping it after another rank failed or the case ran out of time, or a
    scheduler ending the job. Raised where the rank is, so its error names the stage."""


def _terminated(signum, frame) -> None:
    raise RankTerminated(f"received {signal.Signals(signum).name} ({signum})")


def _write(path: Path, payload: dict) -> None:
    replace_file(path, json.dumps(payload, default=str).encode())


def run_rank(exchange: Path) -> int:
    case = load_case(exchange)
    cfg = case.config
    info = sharding.rank_from_environment()
    device = resolve_device(cfg)
    if device.type == "cuda":  # one device per rank: torchrun's local rank, not device.index
        device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.workload.seed)  # the same weights on every rank: FSDP2 shards each rank's full copy
    stage = Stage(lambda name: stage_file(exchange, info.rank).write_text(name))
    pid_file(exchange, info.rank).write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, _terminated)
    held: dict = {}

    def wrap(model: torch.nn.Module, cfg: BenchConfig, device: torch.device, resolved: dict) -> torch.nn.Module:
        held["model"] = sharding.wrap(model, cfg, device, resolved)
        return held["model"]

    try:
        stage("rendezvous")
        info = sharding.init_process_group(device, cfg.measure.case_timeout_s)
        metrics, resolved, checks = measure_case(cfg, device, stage, wrap)
        buckets = sharding.ddp_bucket_bytes(held["model"])
        if buckets is not None:
            metrics["memory"]["ddp_bucket_bytes"] = buckets
    except Exception as exc:  # written for the case's process, then torchrun ends the other ranks
        _write(
            error_file(exchange, info.rank),
            {
                "rank": info.rank,
                "type": type(exc).__name__,
                "message": str(exc)[:2000],
                "phase": stage.name,
                "oom": faults.is_out_of_memory(exc),
                "at_unix_s": time.time(),  # the first failure is the cause; the others followed it
                "figures": dict(getattr(exc, "figures", {})),
                "traceback": traceback.format_exc()[-8000:],
            },
        )
        return 1
    stage("gather")
    payload = {
        "rank": info.rank,
        "local_rank": info.local_rank,
        "node_rank": info.node_rank,
        "host": socket.gethostname(),
        "metrics": metrics,
        "resolved": resolved,
        "checks": checks,
        "provenance": provenance.collect(device),
    }
    gathered = [None] * info.world_size if info.rank == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    if info.rank == 0:
        distributed = {"world_size": info.world_size, "backend": info.backend, "launcher": "torchrun"}
        _write(exchange / MEASUREMENT_FILE, gathered_ranks(cfg, gathered, distributed).to_dict())
    stage("done")
    sharding.close_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run_rank(Path(sys.argv[1])))
