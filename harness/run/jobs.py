"""A sweep as jobs through submitit (the library behind Hydra's SLURM launcher): each case one job (a multi-rank
case one job holding its ranks), each job writing its record into the sweep's output_dir on the shared
filesystem. `launcher=slurm` submits to SLURM; `launcher=submitit_local` runs the same path on this machine, one
job at a time (cases measured side by side would slow each other), and is what the tests use.

Resuming is the sweep's: a case whose record is in output_dir is not submitted again. A case submitted earlier
whose SLURM job is still pending or running is waited for, not submitted twice (jobs/<config hash>.json says
which job holds it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from harness.config.case import Case
from harness.config.parallel import LauncherConfig, is_multi_rank
from harness.records.build import build_record
from harness.records.io import replace_file, write_record

CLUSTERS = {"slurm": "slurm", "submitit_local": "local"}  # launcher -> submitit's cluster name
RDZV_PORT = 29500  # where node 0's torchrun agent meets the others in a case on several nodes
ACTIVE_SLURM_STATES = ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING")


def run_job(case: Case, output_dir: str, log_path: str) -> str | None:
    """What a job runs: the case in its own process (or, across nodes, this node's share of its ranks), and its
    record written into output_dir; returns the record's path (None on a node other than the first)."""
    from harness.run.process import measure_in_subprocess

    if case.config.parallel.nnodes > 1:
        import submitit

        from harness.measure.case import resolve_device
        from harness.measure.launch import RDZV_ENDPOINT_ENV, run_multi_rank

        env = submitit.JobEnvironment()
        os.environ[RDZV_ENDPOINT_ENV] = f"{env.hostnames[0]}:{RDZV_PORT}"
        measured = run_multi_rank(case, resolve_device(case.config), node_rank=env.node)
        if measured is None:
            return None
    else:
        measured = measure_in_subprocess(case, Path(log_path))
    return str(write_record(build_record(case, measured), Path(output_dir)))


def _executor(launcher: LauncherConfig, folder: Path, case: Case):
    import submitit

    parallel = case.config.parallel
    on_gpu = case.config.device.name != "cpu"
    gpus = launcher.gpus_per_node
    if gpus is None:
        gpus = (parallel.nproc if is_multi_rank(case.config) else 1) if on_gpu else 0
    executor = submitit.AutoExecutor(folder=str(folder), cluster=CLUSTERS[launcher.name])
    params = {
        "name": f"bench-{case.config_hash[:8]}",
        "timeout_min": launcher.timeout_min,
        "cpus_per_task": launcher.cpus_per_task,
        "gpus_per_node": gpus,
        "nodes": parallel.nnodes,
        "tasks_per_node": 1,  # torchrun starts the ranks inside the job
    }
    if launcher.mem_gb is not None:
        params["mem_gb"] = launcher.mem_gb
    for key in ("partition", "account", "qos"):
        if getattr(launcher, key) is not None and launcher.name == "slurm":
            params[f"slurm_{key}"] = getattr(launcher, key)
    executor.update_parameters(**params)
    return executor


def _marker(folder: Path, case: Case) -> Path:
    return folder / f"{case.config_hash}.json"


def _still_queued(folder: Path, case: Case, launcher: LauncherConfig):
    """The SLURM job an earlier command submitted for `case`, if it is still pending or running."""
    marker = _marker(folder, case)
    if launcher.name != "slurm" or not marker.exists():
        return None
    import submitit

    job = submitit.SlurmJob(folder=str(folder), job_id=json.loads(marker.read_text())["job_id"])
    return job if job.state in ACTIVE_SLURM_STATES else None


def run_jobs(
    cases: list[tuple[int, Case]],
    output_dir: Path,
    launcher: LauncherConfig,
    wait: bool,
    done: Callable[[dict | None, str | None], None],
) -> list:
    """Submit each case (index, Case) as a job; with `wait`, wait for each and call done(record, path) (record
    None when the job ended without one: done is told why in path's place). Returns the jobs left running."""
    from harness.records.validate import RecordInvalid, load_bytes

    folder = Path(launcher.folder) if launcher.folder else output_dir / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    logs = output_dir / "logs"
    one_at_a_time = launcher.name == "submitit_local"
    jobs = []

    def collect(job) -> None:
        try:
            path = job.result()
        except Exception as exc:  # the job failed outside the case (a node lost, a scheduler limit)
            done(None, f"job {job.job_id} ended without a record: {type(exc).__name__}: {str(exc)[:500]}")
            return
        if path is not None:
            try:
                done(load_bytes(Path(path).read_bytes()), path)
            except (RecordInvalid, OSError) as exc:
                done(None, f"job {job.job_id} wrote {path}, which does not read as a record: {exc}")

    for index, case in cases:
        job = _still_queued(folder, case, launcher)
        if job is None:
            job = _executor(launcher, folder, case).submit(
                run_job, case, str(output_dir), str(logs / f"case-{index:03d}.log")
            )
            replace_file(_marker(folder, case), json.dumps({"job_id": job.job_id, "launcher": launcher.name}))
        if one_at_a_time and wait:
            collect(job)
        else:
            jobs.append(job)
    if not wait:
        return jobs
    for job in jobs:
        collect(job)
    return []
