"""Messages of the libraries a case uses that are not about the measurement — bitsandbytes' "Failed to load CPU
gemm_4bit_forward from kernels-community" (logged as it is imported, on CPUs with AVX512-BF16), transformers'
FutureWarnings — belong in the case's log, not over `bench run`'s progress bar or `bench estimate`'s answer.

A case's process writes its stdout and stderr into its log (harness/run/process.py), which holds everything it
prints. Two places print outside a case's process: the forkserver, which imports the libraries once for every
case (harness/run/preload.py) and shares the terminal with `bench run`, and `bench estimate`'s trace, which runs
in the command itself. The forkserver's imports run with what they print held (`import_holding`), and each case
writes that into its log first (`write_held`); the trace runs inside `into(log)`, which sends the libraries' Python
warnings and log records to a file. Errors are not held: a case that fails says so in its record, and an
exception raised while importing or tracing propagates as it would.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, TextIO

LIBRARIES = ("bitsandbytes", "transformers", "peft", "accelerate", "huggingface_hub")
MAX_HELD_BYTES = 1 << 20  # what the imports printed is a few lines; a runaway library is cut, not replayed whole

_held = bytearray()  # what the imports of import_holding printed, in this process and every process forked from it


def import_holding(module: str) -> None:
    """Import `module` with file descriptors 1 and 2 pointed at a temp file, and keep what was written there, for
    `write_held` in each case's process. Whatever is raised is raised, with what was printed back on stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            importlib.import_module(module)
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            held.seek(0)
            _held.extend(held.read(MAX_HELD_BYTES))
            if failed:  # a broken import is an error to see, not a message to hold
                os.write(2, bytes(_held))


def trace_log() -> Path:
    """Where `bench estimate`'s trace writes the libraries' messages: beside the cache it keeps
    ($BENCH_CACHE_DIR, default ~/.cache/backprop-bench)."""
    from harness.families.hf_inventory import cache_dir

    path = cache_dir() / "logs" / "estimate-trace.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_held(fd: int) -> None:
    """Into a case's log (`fd`): what the libraries printed when the process this case was forked from imported
    them, once per server and so before this case began."""
    if _held:
        os.write(fd, b"[printed while the case server imported the libraries, before this case]\n" + bytes(_held))


def _library_dirs() -> list[Path]:
    dirs = []
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p) for p in spec.submodule_search_locations]
    return dirs


@contextlib.contextmanager
def into(stream: TextIO) -> Iterator[None]:
    """Within the block, the libraries' Python warnings and log records (WARNING and above) are written to
    `stream`; warnings raised elsewhere (the harness's own, torch's) and everything else keep their way."""
    dirs = _library_dirs()
    if importlib.util.find_spec("transformers") is not None:  # it adds its own stderr handler as it is imported:
        importlib.import_module("transformers")  # imported first, that handler is there to be set aside
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if any(Path(filename).is_relative_to(d) for d in dirs):
            stream.write(warnings.formatwarning(message, category, filename, lineno, line))
        else:
            shown(message, category, filename, lineno, file, line)

    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    before = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        for logger, (handlers, propagate) in zip(loggers, before):
            logger.handlers, logger.propagate = handlers, propagate
