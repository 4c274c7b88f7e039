"""One fresh process per case: isolation (allocator state, the CUDA context, libraries that patch torch), a time
limit, and a record whatever happens — a case that raises, runs past measure.case_timeout_s, or dies (a signal,
the kernel's OOM killer) still yields an error record saying how it ended and in which stage.

Processes start from a forkserver that has already imported torch and transformers (harness/run/preload.py):
each case is still a fresh process, without the seconds of imports. BENCH_START_METHOD=spawn starts each from
scratch instead (the fallback if a platform's forkserver misbehaves)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from pathlib import Path

from harness.config.case import Case
from harness.config.groups import ConfigError
from harness.records.build import build_record
from harness.records.outcome import Measurement, failure
from harness.run import library_log
from harness.run.exits import describe_exit

START_METHOD_ENV = "BENCH_START_METHOD"
START_METHODS = ("forkserver", "spawn")
# messages from the case process before its measurement: the stage it entered, where it runs, how it crashed
STAGE, PROVENANCE, CRASH = "__stage__", "__provenance__", "__crash__"


def start_method() -> str:
    """BENCH_START_METHOD, checked (the sweep asks before it creates anything)."""
    method = os.environ.get(START_METHOD_ENV, "forkserver")
    if method not in START_METHODS:
        raise ConfigError(
            START_METHOD_ENV, f"{method!r} is not a start method here; allowed: {', '.join(START_METHODS)}"
        )
    return method


def _context():
    method = start_method()
    ctx = mp.get_context(method)
    if method == "forkserver":  # the libraries' import-time messages held for each case's log, not the terminal
        ctx.set_forkserver_preload(["harness.run.preload_held"])
    return ctx


def _die_with_parent() -> None:
    """Linux: this process is killed when the one that started it dies, so a case whose command or SLURM job
    was killed outright does not go on measuring unseen (a scheduler that tracks processes by their parent,
    not by cgroup, loses the orphans)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no such call
        pass


def _child(case: Case, conn, log_path: str, started: float) -> None:
    _die_with_parent()
    # Library chatter (bitsandbytes, transformers) goes to the case's log, not over the progress bar.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    library_log.write_held(fd)
    try:
        from harness.measure.case import run_case

        def report(news: object) -> None:
            conn.send({PROVENANCE: news} if isinstance(news, dict) else {STAGE: news})

        conn.send(run_case(case, report=report, started=started))
    except BaseException:  # the parent turns this into an error record
        conn.send({CRASH: traceback.format_exc()[-8000:]})
    finally:
        conn.close()


def _host_provenance() -> dict:
    """Where the parent runs, for a case whose process died before it said where it ran."""
    import torch

    from harness.measure import provenance

    return provenance.collect(torch.device("cpu"))


def error_record(case: Case, message: str, kind: str, phase: str | None, extra_provenance: dict | None = None) -> dict:
    """The error record of a case that ended without a measurement, written by the process that watched it (the
    command that collected its SLURM job: harness/run/slurm_jobs.py)."""
    prov = {**_host_provenance(), **(extra_provenance or {})}
    return build_record(case, failure(prov, kind, message, phase))


def _listen(receive, proc, timeout_s: float | None, started: float) -> tuple[object, str, dict | None, bool]:
    """(the measurement or crash message, or None; the last stage; the provenance the case reported; whether it ran
    past its limit), reading what the case's process sends until its measurement, its death or its time limit."""
    message, stage, prov = None, "start", None
    while message is None:
        left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
        if left is not None and left <= 0:
            return None, stage, prov, True
        if not receive.poll(left):
            continue
        try:
            received = receive.recv()
        except EOFError:  # the child died before sending its measurement
            break
        if isinstance(received, dict) and STAGE in received:
            stage = received[STAGE]
        elif isinstance(received, dict) and PROVENANCE in received:
            prov = received[PROVENANCE]
        else:
            message = received
    return message, stage, prov, False


def _end(proc, kill: bool) -> None:
    if kill:
        proc.kill()
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
        proc.join()


def measure_in_subprocess(case: Case, log_path: Path, limit: tuple[float, str] | None = None) -> Measurement:
    """What `case` measured in a fresh process. The process reports where it runs and each stage it enters, so a
    case that runs past its measure.case_timeout_s (then killed) or dies without a measurement is still told:
    how it ended, where, on which device. `limit` is a shorter limit from outside the case — seconds, and the
    words that name it (its SLURM job's time limit) — applied when it ends sooner; it is not in the case's
    config, whose hash stays the same wherever the case runs."""
    timeout_s = case.config.measure.case_timeout_s
    limit_name = None if timeout_s is None else f"measure.case_timeout_s={timeout_s:g} s"
    if limit is not None and (timeout_s is None or limit[0] < timeout_s):
        timeout_s, limit_name = limit
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    # time.monotonic is one clock for every process on the host: the case's process reads its deadline from it too
    started = time.monotonic()
    proc = ctx.Process(target=_child, args=(case, send, str(log_path), started))
    try:
        proc.start()
    except (OSError, EOFError) as exc:  # the forkserver could not start or died: a record, and the sweep goes on
        message = (
            f"could not start the case process ({type(exc).__name__}: {exc}); "
            f"{START_METHOD_ENV}=spawn starts each case from scratch"
        )
        return failure(_host_provenance(), "ProcessStart", message, "start")
    send.close()
    try:
        message, stage, prov, timed_out = _listen(receive, proc, timeout_s, started)
    except KeyboardInterrupt:  # Ctrl-C: the case's process goes too, and it has written nothing
        proc.kill()
        proc.join()
        raise
    _end(proc, kill=timed_out)
    if isinstance(message, Measurement):
        return message
    prov = prov or _host_provenance()
    if timed_out:
        text = f"case ran past {limit_name} in stage {stage!r} and was ended; see {log_path}"
        return failure(prov, "CaseTimeout", text, stage)
    if message is None:
        text = f"case process {describe_exit(proc.exitcode)}, in stage {stage!r}, without a record; see {log_path}"
        return failure(prov, "ProcessDied", text, stage)
    return failure(prov, "CaseCrashed", message[CRASH], stage)


def run_in_subprocess(case: Case, log_path: Path, limit: tuple[float, str] | None = None) -> dict:
    """The record of `case`, measured in a fresh process (whatever happened to that process)."""
    return build_record(case, measure_in_subprocess(case, log_path, limit))
