"""A multi-rank case, from the case's own process: its ranks started through torchrun (torch.distributed.run),
their one measurement collected, and one whatever happens — a rank that raises, dies or hangs ends the case
with an error naming the rank and the stage it was in, never a hung sweep."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from harness.config.case import Case
from harness.config.parallel import JOB_LIMIT_ENV, ParallelConfig, world_size
from harness.measure import provenance
from harness.records.outcome import Measurement
from harness.records.ranks import CASE_FILE, MEASUREMENT_FILE, error_file, failed_ranks, stage_file

# Seconds the ranks get to end after torchrun is asked to stop them, before they are killed.
STOP_GRACE_S = 15.0
# What the case's own limit keeps back (at most half of it) for stopping the ranks and writing the record before
# the parent ends this process.
RECORD_MARGIN_S = 30.0
RDZV_ENDPOINT_ENV = "BENCH_RDZV_ENDPOINT"  # host:port of node 0, for a case on several nodes (set by the job)


def torchrun_command(parallel: ParallelConfig, exchange: Path, node_rank: int = 0) -> list[str]:
    """The torchrun command line of a case: one node standalone, or several meeting at BENCH_RDZV_ENDPOINT."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={parallel.nproc}"]
    if parallel.nnodes == 1:
        command.append("--standalone")
    else:
        endpoint = os.environ.get(RDZV_ENDPOINT_ENV)
        if not endpoint:
            raise RuntimeError(f"{parallel.nnodes} nodes need {RDZV_ENDPOINT_ENV}=host:port (set by the SLURM job)")
        command += [
            f"--nnodes={parallel.nnodes}",
            f"--node-rank={node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
        ]
    # one try: a failed rank is a result to record, not something to restart
    return command + ["--max-restarts=0", "-m", "harness.measure.ranks", str(exchange)]


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """torchrun passes SIGTERM on to its workers (each in its own session); what is left after the grace is killed."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# where a rank is that has written no stage yet: under load its process can still be importing torch or joining the
# process group when the case's time runs out; the record names it all the same
STARTING = "starting (no stage reported yet)"


def _stages(exchange: Path, world: int) -> dict[int, str]:
    """Each rank's last stage, every rank of the world named."""
    out = {}
    for rank in range(world):
        path = stage_file(exchange, rank)
        out[rank] = path.read_text().strip() if path.exists() else STARTING
    return out


def _failures(exchange: Path, world: int) -> list[dict]:
    return [json.loads(error_file(exchange, r).read_text()) for r in range(world) if error_file(exchange, r).exists()]


def run_multi_rank(
    case: Case,
    device: torch.device,
    report: Callable[[object], None] | None = None,
    node_rank: int = 0,
    started: float | None = None,
) -> Measurement | None:
    """What a multi-rank case measured (None on a node other than the first, whose rank 0 gathers it). The time
    limit counts from `started` (time.monotonic: when the parent started the case's process, so that the ranks
    are stopped and the record written before the parent's own limit, however long this process took to get
    here), else from now."""
    parallel = case.config.parallel
    world = world_size(case.config)
    limit = case.config.measure.case_timeout_s
    job_limit = os.environ.get(JOB_LIMIT_ENV)  # its SLURM job's, when that ends sooner (harness/run/jobs.py)
    if job_limit is not None and (limit is None or float(job_limit) < limit):
        limit = float(job_limit)
    margin = None if limit is None else min(RECORD_MARGIN_S, limit / 2)
    begun = time.monotonic() if started is None else started
    deadline = None if limit is None else begun + limit - margin
    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        exchange = Path(tmp)
        (exchange / CASE_FILE).write_bytes(pickle.dumps(case))  # the planned case as itself, for every rank
        if report:
            report("ranks")
        # its own session: the whole tree can be ended together; its output goes where this process's goes
        proc = subprocess.Popen(torchrun_command(parallel, exchange, node_rank), start_new_session=True)
        timed_out = False
        try:
            proc.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _stop(proc, STOP_GRACE_S if margin is None else min(STOP_GRACE_S, margin / 2))
        if node_rank != 0:
            return None
        if not timed_out and proc.returncode == 0 and (exchange / MEASUREMENT_FILE).exists():
            return Measurement.from_dict(json.loads((exchange / MEASUREMENT_FILE).read_text()))
        prov = provenance.collect(device)
        prov["distributed"] = {"world_size": world, "launcher": "torchrun"}
        how = f"ranks ran past measure.case_timeout_s={limit:g} s and were stopped" if timed_out else None
        failures = _failures(exchange, world)
        if how is None and not failures:
            how = f"torchrun exited with {proc.returncode} without a record or a rank's error (a rank killed?)"
        return failed_ranks(prov, failures, _stages(exchange, world), how, timed_out)
