"""Sweeps: one process per case (harness/run/process.py), one record per case, a progress bar, resumable.

A case that raises, crashes or is killed still yields a record (status error), and the sweep goes on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.case import Case
from harness.config.compose import override_key
from harness.config.parallel import LauncherConfig
from harness.records.io import write_record
from harness.run.process import run_in_subprocess, start_method


@dataclass
class SweepResult:
    output_dir: Path
    records: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # cases whose record was already in output_dir
    unreadable: list[str] = field(default_factory=list)  # files in output_dir that are not records
    not_run: int = 0  # cases left when the sweep was interrupted
    interrupted: bool = False
    submitted: list = field(default_factory=list)  # jobs still running when the command returned (--no-wait)
    job_failures: list[str] = field(default_factory=list)  # jobs that ended without writing a record

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status)


def existing_results(output_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """config_hash -> record file, for every ok or oom record already in output_dir (an error record is not a
    result: its case runs again). Files that do not read as records are reported, never touched."""
    from harness.records.validate import RecordInvalid, load_bytes

    found: dict[str, Path] = {}
    unreadable: list[str] = []
    for path in sorted(p for p in output_dir.glob("*.json") if not p.name.startswith(".tmp-")):
        try:
            record = load_bytes(path.read_bytes())
        except (RecordInvalid, OSError) as exc:
            if "status: error" not in str(exc):
                unreadable.append(f"{path.name}: {exc}")
            continue
        found.setdefault(record["config_hash"], path)
    return found, unreadable


def run_sweep(
    cases: list[Case | list[str]],
    output_dir: Path,
    progress: bool = True,
    force: bool = False,
    launcher: LauncherConfig | None = None,
    wait: bool = True,
) -> SweepResult:
    """Run every case not already recorded in output_dir (matched by config hash; `force` reruns them all).

    Records are written whole or not at all (harness.records.io.write_new_file), so a sweep stopped by Ctrl-C or
    a kill leaves only complete records, and rerunning the same command resumes it. A `launcher` other than
    local makes each case a submitit job (harness/run/jobs.py); without `wait` the command returns once they
    are submitted (SweepResult.submitted), and a later rerun collects and resumes."""
    from tqdm import tqdm

    from harness.config.compose import make_case

    cases = [c if isinstance(c, Case) else make_case(c) for c in cases]  # override lists: tests, one-off calls
    start_method()  # a bad BENCH_START_METHOD stops here, before any folder is made
    output_dir.mkdir(parents=True, exist_ok=True)
    logs = output_dir / "logs"
    logs.mkdir(exist_ok=True)
    result = SweepResult(output_dir=output_dir)
    done, result.unreadable = ({}, []) if force else existing_results(output_dir)
    bar = tqdm(total=len(cases), unit="case", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    if launcher is not None and launcher.name != "local":
        return _run_as_jobs(cases, result, done, launcher, wait, bar)
    try:
        for index, case in enumerate(cases):
            previous = done.get(case.config_hash)
            if previous is not None:
                result.skipped.append(previous)
                bar.update(1)
                continue
            bar.set_description(
                " ".join(o for o in case.overrides if override_key(o) in ("model", "method", "checkpointing"))
            )
            record = run_in_subprocess(case, logs / f"case-{index:03d}.log")
            result.paths.append(write_record(record, output_dir))
            result.records.append(record)
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
        result.not_run = len(cases) - len(result.records) - len(result.skipped)
    bar.close()
    return result


def _run_as_jobs(
    cases: list[Case], result: SweepResult, done: dict, launcher: LauncherConfig, wait: bool, bar
) -> SweepResult:
    from harness.run.jobs import run_jobs

    pending = []
    for index, case in enumerate(cases):
        previous = done.get(case.config_hash)
        if previous is not None:
            result.skipped.append(previous)
            bar.update(1)
        else:
            pending.append((index, case))

    def finished(record: dict | None, path: str | None) -> None:
        if record is None:
            result.job_failures.append(path or "a job ended without a record")
        else:
            result.records.append(record)
            result.paths.append(Path(path))
        bar.update(1)

    try:
        result.submitted = run_jobs(pending, result.output_dir, launcher, wait, finished, bar.set_postfix_str)
    except KeyboardInterrupt:  # the jobs go on; a rerun collects their records
        result.interrupted = True
        result.not_run = len(pending) - len(result.records) - len(result.job_failures)
    bar.close()
    return result
