"""A sweep as jobs through submitit (the library behind Hydra's SLURM launcher): each case one job (a multi-rank
case one job holding its ranks), each job writing its record into the sweep's output_dir on the shared
filesystem. `launcher=slurm` submits to SLURM (harness/run/slurm_jobs.py: the queue, the checks, the waiting);
`launcher=submitit_local` runs the same job path on this machine, one job at a time (cases measured side by side
would slow each other), and is what the tests without a cluster use.

Resuming is the sweep's: a case whose record is in output_dir is not submitted again. jobs/<config hash>.json
(the case's marker) says which job holds it and what that job asked for."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from harness.config.case import Case
from harness.config.parallel import JOB_END_MARGIN_S, JOB_LIMIT_ENV, LauncherConfig
from harness.records.build import build_record
from harness.records.io import replace_file, write_record
from harness.run.process import START_METHOD_ENV

CLUSTERS = {"slurm": "slurm", "submitit_local": "local"}  # launcher -> submitit's cluster name
RDZV_PORT = 29500  # where node 0's torchrun agent meets the others in a case on several nodes
MESSAGE_TAIL = 2000  # characters of a failed job's error kept in its message: the end, where the reason is


def tail(text: str, limit: int = MESSAGE_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


_TERMINATED: list[str] = []  # set when SLURM signals the job to end (scancel, preemption, its time limit)


def _on_term(signum, frame) -> None:
    # The case's process gets SIGTERM too and dies; this process stays (submitit ignores the signal) to write
    # the case's record, which then says that the job was told to end.
    _TERMINATED.append(signal.Signals(signum).name)
    print("bench: SIGTERM from SLURM: the case's process ends with it", file=sys.stderr, flush=True)


def _prepare_job(case: Case, job: dict) -> tuple[float, str]:
    """Inside a SLURM job, before the case's process starts (it inherits this environment): torch's threads
    follow the CPUs allocated, the records learn whether the node is the job's alone, and the case's time limit
    ends before the job's. Returns that limit and the words that name it in a CaseTimeout record."""
    # submitit asks SLURM for USR2 before the time limit; SLURM sends it to every process of the job, and up to
    # 60 s early (sbatch --signal): to a job of a minute or two, at once. Its default action would kill the case,
    # and submitit's handler (installed just before this runs) raises UncompletedJobError ("timed-out and not
    # checkpointable"), losing the record. Ignored — an ignored signal stays ignored in the processes started from
    # here, the case's and its ranks — since the case's own limit ends it before the job's; first, before the
    # import of torch below (seconds) leaves the handler armed.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    limit_s = max(1.0, job["timeout_min"] * 60 - JOB_END_MARGIN_S)
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    # before torch is first imported here (provenance imports it), so that this process's records say so too;
    # torchrun gives each rank one thread (as it does locally): set for one process only
    if cpus and case.config.parallel.name == "none":
        os.environ.setdefault("OMP_NUM_THREADS", cpus)
    # One case per job: the forkserver's preload would be paid for this one case anyway, and a spawned case is
    # the job's own child, which dies with it (harness/run/process.py).
    os.environ.setdefault(START_METHOD_ENV, "spawn")
    os.environ[JOB_LIMIT_ENV] = str(limit_s)  # a multi-rank case stops its ranks before it (harness/measure/launch.py)
    from harness.measure.provenance import SLURM_EXCLUSIVE_ENV

    os.environ[SLURM_EXCLUSIVE_ENV] = "1" if job["exclusive"] else "0"
    return limit_s, (
        f"the job's time limit (launcher.timeout_min={job['timeout_min']}, less {JOB_END_MARGIN_S} s kept to "
        f"end the case and write this record: {limit_s:g} s)"
    )


def run_job(case: Case, output_dir: str, log_path: str, job: dict | None = None) -> str | None:
    """What a job runs: the case in its own process (or, across nodes, this node's share of its ranks), and its
    record written into output_dir; returns the record's path (None on a node other than the first). `job` is
    a SLURM job's request (harness/run/slurm_request.py), None under submitit_local."""
    from harness.run.process import measure_in_subprocess

    limit = _prepare_job(case, job) if job is not None else None
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
        measured = measure_in_subprocess(case, Path(log_path), limit=limit)
    if _TERMINATED and measured.error:
        measured.error["message"] += (
            f"; the SLURM job {os.environ.get('SLURM_JOB_ID')} was sent SIGTERM first (scancel, preemption, or "
            "its time limit)"
        )
    record = build_record(case, measured)
    return str(write_record(record, Path(output_dir)))


def executor(request: dict, folder: Path, case: Case, launcher: LauncherConfig):
    """A submitit executor for one case's job, asking for `request` (harness/run/slurm_request.py)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=CLUSTERS[launcher.name])
    params = {
        "name": job_name(case),
        "timeout_min": request["timeout_min"],
        "cpus_per_task": request["cpus_per_task"],  # None: not asked (submitit leaves it out)
        "gpus_per_node": request["gpus_per_node"],
        "nodes": request["nodes"],
        "tasks_per_node": 1,  # torchrun starts the ranks inside the job
        "mem_gb": request["mem_gb"],
    }
    if launcher.name == "slurm":
        for key in ("partition", "account", "qos"):
            if getattr(launcher, key) is not None:
                params[f"slurm_{key}"] = getattr(launcher, key)
        if request["exclusive"]:
            params["slurm_exclusive"] = True
    executor.update_parameters(**params)
    return executor


def job_name(case: Case) -> str:
    return f"bench-{case.config_hash[:8]}"


def marker_path(folder: Path, case: Case) -> Path:
    return folder / f"{case.config_hash}.json"


def read_marker(folder: Path, case: Case) -> dict | None:
    try:
        return json.loads(marker_path(folder, case).read_text())
    except (OSError, ValueError):
        return None


def write_marker(folder: Path, case: Case, marker: dict) -> None:
    replace_file(marker_path(folder, case), json.dumps(marker, sort_keys=True))


def read_job_record(path: str) -> dict:
    """A record a job wrote, validated as a result unless it is an error record (those say why a case failed)."""
    from harness.records.validate import check, parse

    record = parse(Path(path).read_bytes())
    return record if record.get("status") == "error" else check(record)


def run_jobs(
    cases: list[tuple[int, Case]],
    output_dir: Path,
    launcher: LauncherConfig,
    wait: bool,
    done: Callable[[dict | None, str | None], None],
    progress: Callable[[str], None] | None = None,
) -> list:
    """Submit each case (index, Case) as a job; with `wait`, wait for each and call done(record, path) (record
    None when the job ended without one: done is told why in path's place). `progress` is shown the queue's
    state while waiting. Returns the jobs left queued or running."""
    folder = Path(launcher.folder) if launcher.folder else output_dir / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    if launcher.name == "slurm":
        from harness.run.slurm_jobs import run_slurm_jobs

        return run_slurm_jobs(cases, output_dir, launcher, wait, done, folder, progress)
    return _run_local_jobs(cases, output_dir, launcher, done, folder)


def _run_local_jobs(cases, output_dir: Path, launcher: LauncherConfig, done, folder: Path) -> list:
    """submitit_local: one job at a time, each waited for before the next starts."""
    from harness.records.validate import RecordInvalid
    from harness.run.slurm_request import job_request

    logs = output_dir / "logs"
    for index, case in cases:
        request = job_request(case, launcher, None)
        job = executor(request, folder, case, launcher).submit(
            run_job, case, str(output_dir), str(logs / f"case-{index:03d}.log")
        )
        write_marker(folder, case, {"job_id": job.job_id, "launcher": launcher.name, "request": request})
        try:
            path = job.result()
        except Exception as exc:  # the job failed outside the case
            done(None, f"job {job.job_id} ended without a record: {type(exc).__name__}: {tail(str(exc))}")
            continue
        if path is not None:
            try:
                done(read_job_record(path), path)
            except (RecordInvalid, OSError) as exc:
                done(None, f"job {job.job_id} wrote {path}, which does not read as a record: {exc}")
    return []
