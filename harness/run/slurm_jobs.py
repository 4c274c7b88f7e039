"""launcher=slurm: a sweep's cases as SLURM jobs, each submitted once.

- Before anything is submitted, every case's request is checked against the partition (harness/run/
  slurm_request.py): one that can never run exits 2 naming the key.
- A case whose marker names a job is that job's until SLURM says the job ended (harness/run/slurm_queue.py asks
  the controller first, so a job queued a moment ago counts). A pending job whose request differs from what the
  rerun asks is cancelled and submitted again with the new request, and the output says so; a running one is
  waited for, and the output says how to replace it.
- A job that ended is collected once: its record, or — where the job was killed or failed outside the case —
  an error record written here from the end of the job's log. Only after that does a rerun submit the case
  again.
- While waiting, each case's queue state is shown as it changes (pending and why, running where, done) and
  the bar counts them."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.config.case import Case
from harness.config.fields import ConfigError
from harness.config.parallel import LauncherConfig
from harness.run import slurm_queue
from harness.run.jobs import executor, job_name, read_job_record, read_marker, run_job, tail, write_marker
from harness.run.slurm_queue import JobState, SlurmUnavailable
from harness.run.slurm_request import changes, check_request, job_request

POLL_MIN_S, POLL_MAX_S = 1.0, 10.0  # the queue is asked at most every 10 s, sooner while things change
UNANSWERED_LIMIT_S = 300.0  # a scheduler silent this long ends the wait (the jobs go on; a rerun collects)
RESULT_WAIT_S = 20.0  # a job that completed may take this long to show its result on a shared filesystem


@dataclass
class Tracked:
    index: int
    case: Case
    job_id: str
    request: dict
    state: JobState | None = None

    @property
    def label(self) -> str:
        return f"case {self.index:03d} ({self.case.config_hash[:8]}) job {self.job_id}"


def _note(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"bench: {text}", file=sys.stderr)


def _partition(launcher: LauncherConfig):
    try:
        return slurm_queue.partition(launcher.partition)
    except KeyError as exc:
        raise ConfigError("launcher.partition", exc.args[0]) from None
    except SlurmUnavailable as exc:
        raise ConfigError("launcher", f"SLURM did not say what partition {launcher.partition} holds: {exc}") from None


def _requests(cases: list[tuple[int, Case]], launcher: LauncherConfig) -> dict[int, dict]:
    """Every case's request, each checked before the first is submitted."""
    part = _partition(launcher)
    requests = {}
    for index, case in cases:
        requests[index] = job_request(case, launcher, part)
        check_request(requests[index], part, launcher)
    return requests


def _submit(index: int, case: Case, request: dict, launcher: LauncherConfig, folder: Path, output_dir: Path) -> Tracked:
    log = output_dir / "logs" / f"case-{index:03d}.log"
    job = executor(request, folder, case, launcher).submit(run_job, case, str(output_dir), str(log), request)
    write_marker(folder, case, {"job_id": job.job_id, "launcher": "slurm", "request": request, "collected": False})
    return Tracked(index, case, job.job_id, request)


def _states(job_ids: list[str]) -> dict[str, JobState]:
    try:
        return slurm_queue.job_states(job_ids)
    except SlurmUnavailable as exc:
        raise ConfigError("launcher", f"SLURM did not say where the earlier jobs are: {exc}") from None


def _reuse_or_replace(
    index: int,
    case: Case,
    marker: dict,
    state: JobState,
    request: dict,
    launcher: LauncherConfig,
    folder: Path,
    out: Path,
) -> Tracked:
    """The job an earlier command submitted for this case, still queued or running: kept, or replaced when it
    is pending with another request."""
    job_id = marker["job_id"]
    differ = changes(marker.get("request"), request)
    if differ and state.state == "PENDING":
        slurm_queue.cancel([job_id])
        new = _submit(index, case, request, launcher, folder, out)
        _note(
            f"case {index:03d}: job {job_id} was pending with other launcher settings ({'; '.join(differ)}); "
            f"cancelled it and submitted job {new.job_id} with the new ones"
        )
        return new
    kept = Tracked(index, case, job_id, marker.get("request") or request, state)
    if differ:
        _note(
            f"{kept.label} is {state.describe()} with other launcher settings ({'; '.join(differ)}); its record "
            f"will be the case's. To measure with the new settings: scancel {job_id}, then rerun"
        )
    else:
        _note(f"{kept.label} (submitted earlier) is {state.describe()}; not submitted again")
    return kept


def run_slurm_jobs(
    cases: list[tuple[int, Case]],
    output_dir: Path,
    launcher: LauncherConfig,
    wait: bool,
    done: Callable[[dict | None, str | None], None],
    folder: Path,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """harness.run.jobs.run_jobs for launcher=slurm; returns the ids of the jobs left queued or running."""
    requests = _requests(cases, launcher)
    markers = {index: read_marker(folder, case) for index, case in cases}
    earlier = [m["job_id"] for m in markers.values() if m and m.get("launcher") == "slurm" and not m.get("collected")]
    states = _states(earlier)
    tracked: list[Tracked] = []
    for index, case in cases:
        marker, request = markers[index], requests[index]
        state = states.get(marker["job_id"]) if marker and marker["job_id"] in earlier else None
        if state is not None and state.name and state.name != job_name(case):
            state = None  # that id is another job now (the cluster's ids started again): not ours to touch
        if state is not None and state.active:
            tracked.append(_reuse_or_replace(index, case, marker, state, request, launcher, folder, output_dir))
            continue
        if state is not None:  # it ended since the command that submitted it: collected now, once
            earlier_job = Tracked(index, case, marker["job_id"], marker.get("request") or request, state)
            if _collect(earlier_job, folder, output_dir, done):
                continue
        tracked.append(_submit(index, case, request, launcher, folder, output_dir))
    if not wait:
        return [t.job_id for t in tracked]
    _wait(tracked, folder, output_dir, done, progress)
    return []


def _summary(tracked: list[Tracked]) -> str:
    counts = Counter(("done" if not t.state.active else t.state.describe()) for t in tracked if t.state)
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def _wait(tracked: list[Tracked], folder: Path, out: Path, done, progress) -> None:
    """Until every job has ended and been collected, showing each case's queue state as it changes."""
    outstanding = list(tracked)
    delay, silent_since = POLL_MIN_S, None
    while outstanding:
        try:
            states = slurm_queue.job_states([t.job_id for t in outstanding])
            silent_since = None
        except SlurmUnavailable as exc:
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since > UNANSWERED_LIMIT_S:
                raise ConfigError("launcher", f"SLURM stopped answering while jobs ran ({exc}); rerun to collect")
            _note(f"SLURM did not answer ({exc}); asking again")
            time.sleep(POLL_MAX_S)
            continue
        changed = False
        for t in outstanding:
            new = states[t.job_id]
            if t.state is None or new.describe() != t.state.describe():
                changed = True
                hopeless = f" — it cannot start as asked: scancel {t.job_id}" if new.hopeless else ""
                _note(f"{t.label}: {new.describe()}{hopeless}")
            t.state = new
        for t in [t for t in outstanding if not t.state.active]:
            _collect(t, folder, out, done)
            outstanding.remove(t)
        if progress is not None:
            progress(_summary(tracked))
        if outstanding:
            delay = POLL_MIN_S if changed else min(delay * 1.5, POLL_MAX_S)
            time.sleep(delay)


def _outcome(job, state: JobState):
    """submitit's (outcome, value) of an ended job, or None where the job left none (killed before the end)."""
    from submitit.core import utils

    deadline = time.monotonic() + (RESULT_WAIT_S if state.state == "COMPLETED" else 2.0)
    while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not job.paths.result_pickle.exists():
        return None
    return utils.pickle_load(job.paths.result_pickle)


def _collect(t: Tracked, folder: Path, out: Path, done) -> bool:
    """Report an ended job's record to `done` (the job's own, or one written here saying how the job ended) and
    mark the job collected. False where there is nothing to report: the record it wrote was since removed."""
    import submitit

    from harness.records.validate import RecordInvalid

    job = submitit.SlurmJob(folder=str(folder), job_id=t.job_id)
    outcome = _outcome(job, t.state)
    write_marker(folder, t.case, {"job_id": t.job_id, "launcher": "slurm", "request": t.request, "collected": True})
    if outcome is not None and outcome[0] == "success":
        path = outcome[1]
        if path is None or not Path(path).exists():
            return False
        try:
            done(read_job_record(path), path)
        except (RecordInvalid, OSError) as exc:
            done(None, f"{t.label} wrote {path}, which does not read as a record: {exc}")
        return True
    if outcome is not None:  # the job raised outside the case: its traceback ends with the reason
        how = f"failed outside the case: {tail(str(outcome[1]))}"
    else:
        log = job.stderr() or ""
        how = f"ended {t.state.state} without a record; the end of its log ({job.paths.stderr}):\n{tail(log)}"
    from harness.records.io import write_record

    record = _job_error_record(t, how)
    done(record, str(write_record(record, out)))
    return True


def _job_error_record(t: Tracked, how: str) -> dict:
    """The record of a case whose job ended without one, written by the command that collects it."""
    from harness.run.process import error_record

    try:
        account = slurm_queue.accounting([t.job_id]).get(t.job_id)
    except SlurmUnavailable:  # the record is written without what accounting would add
        account = None
    state = account or t.state
    slurm = {
        "job_id": t.job_id,
        "node": state.node or t.state.node,
        "partition": t.request.get("partition"),
        "cpus": t.request.get("cpus_per_task"),
        "gpus": t.request.get("gpus_per_node"),
        "exclusive": t.request.get("exclusive"),
        "job_state": t.state.state,
        "elapsed": state.elapsed or t.state.elapsed,
        "alloc": state.alloc,
        "recorded_by": "the command that collected the job",
    }
    timed_out = t.state.state in ("TIMEOUT", "DEADLINE")
    limit = f" (its time limit, launcher.timeout_min={t.request.get('timeout_min')})" if timed_out else ""
    return error_record(
        t.case,
        f"SLURM job {t.job_id} ({job_name(t.case)}){limit} {how}",
        "CaseTimeout" if timed_out else "JobEnded",
        "job",
        extra_provenance={"slurm": slurm},
    )
