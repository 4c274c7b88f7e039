"""Sweeps: one spawned process per case, one record per case, a progress bar and a summary at the end.

A fresh process per case keeps allocator state, the CUDA context and libraries that patch torch
(bitsandbytes, peft) from carrying over from one case to the next. A case that raises, crashes or is
killed still yields a record (status error), and the sweep goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness.measure.faults import describe_exit
from harness.records.schema import build_record, write_record


def _child(overrides: list[str], conn, log_path: str) -> None:
    # Library chatter (bitsandbytes, transformers) goes to the case's log, not over the progress bar.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        from harness.measure.case import run_case

        conn.send(run_case(overrides, report=lambda stage: conn.send({STAGE: stage})))
    except BaseException:  # the parent turns this into an error record
        conn.send({CRASH: traceback.format_exc()[-8000:]})
    finally:
        conn.close()


STAGE, CRASH = "__stage__", "__crash__"  # messages from the case process that are not its record


def _parent_error_record(overrides: list[str], message: str, kind: str, phase: str | None) -> dict:
    import torch

    from harness.measure import provenance
    from harness.spec.compose import compose_case, to_container

    config = to_container(compose_case(overrides))
    return build_record(config=config, overrides=overrides, provenance=provenance.collect(torch.device("cpu")),
                        status="error", error={"type": kind, "message": message, "phase": phase})


def run_in_subprocess(overrides: list[str], log_path: Path) -> dict:
    """The record of one case, run in a fresh spawned process. The process reports each stage it enters, so a
    case that runs past its measure.case_timeout_s (then killed) or dies without a record (a signal, the
    kernel's OOM killer) still gets an error record saying how it ended and where."""
    from harness.spec.compose import compose_case

    timeout_s = compose_case(overrides).measure.case_timeout_s
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(overrides, send, str(log_path)))
    started = time.monotonic()
    proc.start()
    send.close()
    message, stage, timed_out = None, "start", False
    try:
        while message is None:
            left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
            if left is not None and left <= 0:
                timed_out = True
                break
            if not receive.poll(left):
                continue
            try:
                received = receive.recv()
            except EOFError:  # the child died before sending its record
                break
            if isinstance(received, dict) and STAGE in received:
                stage = received[STAGE]
            else:
                message = received
    except KeyboardInterrupt:  # Ctrl-C: the case's process goes too, and it has written nothing
        proc.kill()
        proc.join()
        raise
    if timed_out:
        proc.kill()
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if timed_out:
        return _parent_error_record(
            overrides, f"case ran past measure.case_timeout_s={timeout_s:g} s in stage {stage!r} and was ended; "
                       f"see {log_path}", "CaseTimeout", stage)
    if message is None:
        return _parent_error_record(
            overrides, f"case process {describe_exit(proc.exitcode)}, in stage {stage!r}, without a record; see "
                       f"{log_path}", "ProcessDied", stage)
    if CRASH in message:
        return _parent_error_record(overrides, message[CRASH], "CaseCrashed", stage)
    return message


@dataclass
class SweepResult:
    output_dir: Path
    records: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # cases whose record was already in output_dir
    unreadable: list[str] = field(default_factory=list)  # files in output_dir that are not records
    not_run: int = 0  # cases left when the sweep was interrupted
    interrupted: bool = False

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


def run_sweep(cases: list[list[str]], output_dir: Path, progress: bool = True, force: bool = False) -> SweepResult:
    """Run every case not already recorded in output_dir (matched by config hash; `force` reruns them all).

    Records are written whole or not at all (harness.records.schema.write_new_file), so a sweep stopped by Ctrl-C or
    a kill leaves only complete records, and rerunning the same command resumes it."""
    from tqdm import tqdm

    from harness.spec.compose import compose_case, to_container
    from harness.records.schema import config_hash

    output_dir.mkdir(parents=True, exist_ok=True)
    logs = output_dir / "logs"
    logs.mkdir(exist_ok=True)
    result = SweepResult(output_dir=output_dir)
    done, result.unreadable = ({}, []) if force else existing_results(output_dir)
    bar = tqdm(total=len(cases), unit="case", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for index, overrides in enumerate(cases):
            previous = done.get(config_hash(to_container(compose_case(overrides))))
            if previous is not None:
                result.skipped.append(previous)
                bar.update(1)
                continue
            bar.set_description(" ".join(o for o in overrides
                                         if o.split("=")[0] in ("model", "method", "checkpointing")))
            record = run_in_subprocess(overrides, logs / f"case-{index:03d}.log")
            result.paths.append(write_record(record, output_dir))
            result.records.append(record)
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
        result.not_run = len(cases) - len(result.records) - len(result.skipped)
    bar.close()
    return result
