"""Where a planned sweep runs, decided in the parent before any case starts: the default suite for this machine,
the device the cases ask for (it must be there), and the folder their records go to (it must be writable)."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

from harness.config.case import Case
from harness.config.groups import BenchConfig, ConfigError
from harness.config.parallel import is_multi_rank


def default_suite() -> str:
    import torch

    return "default-gpu" if torch.cuda.is_available() else "smoke"


def _needs_more(cfg: BenchConfig, on_cuda: bool) -> tuple[str, str] | None:
    """(key, why) where this machine cannot run the case as configured, else None."""
    import torch

    if on_cuda and is_multi_rank(cfg) and cfg.parallel.nproc > torch.cuda.device_count():
        return "parallel.nproc", (
            f"{cfg.parallel.nproc} ranks need one CUDA device each; this machine has {torch.cuda.device_count()}"
        )
    if cfg.method.paged and not on_cuda:
        # bitsandbytes falls back to ordinary state on a CPU with only a warning: a label the run would not honour
        return "method.paged", (
            "a paged optimizer keeps its state in CUDA unified memory and this case runs on the CPU; allowed here: "
            "method.paged=false"
        )
    return None


def check_device(cases: list[Case]) -> list[Case]:
    """The cases this machine can run; a case whose ranks need more GPUs than it has, or a paged optimizer on a
    CPU, is an error (exit 2) when asked for by itself, and left out with a note from a suite (its 8-GPU cases on
    a 2-GPU machine)."""
    import torch

    runnable = []
    for case in cases:
        device = case.config.device
        unrunnable = _needs_more(case.config, device.type_on(torch.cuda.is_available()) == "cuda")
        if unrunnable is not None:
            if case.suite is None:
                raise ConfigError(*unrunnable)
            print(f"bench: left out of {case.suite}: {' '.join(case.overrides)} ({unrunnable[1]})", file=sys.stderr)
            continue
        runnable.append(case)
        if device.name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", "cuda was asked for but torch sees no CUDA device; allowed here: auto, cpu")
        if device.name == "cuda" and device.index >= torch.cuda.device_count():
            raise ConfigError(
                "device.index",
                f"{device.index} is out of range; this machine has {torch.cuda.device_count()} CUDA device(s)",
            )
    return runnable


def split_output_dir(overrides: list[str]) -> tuple[str | None, list[str]]:
    """output_dir=... is where records go, not part of the case: taken out before the cases are planned."""
    from harness.config.compose import override_key

    chosen = [o.split("=", 1)[1] for o in overrides if override_key(o) == "output_dir"]
    return (chosen[-1] if chosen else None), [o for o in overrides if override_key(o) != "output_dir"]


def output_path(chosen: str | None, label: str) -> Path:
    if chosen:
        path = Path(chosen).expanduser()
    else:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = Path("results") / "runs" / f"{stamp}-{label}"
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ConfigError("output_dir", f"{path} is not writable (checked {probe})")
    if path.exists() and not path.is_dir():
        raise ConfigError("output_dir", f"{path} exists and is not a directory")
    return path
