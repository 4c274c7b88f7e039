"""What a case process's end says when it died without a record: its exit code, or the signal and what that
signal usually means (for the person reading the record)."""

from __future__ import annotations

import signal

# What a signal that ended a case process usually means, for the person reading the record.
SIGNAL_MEANINGS = {
    signal.SIGKILL: "killed outright: usually the kernel's out-of-memory killer (host RAM exhausted; `dmesg` "
    "says so) or a job scheduler's hard limit",
    signal.SIGSEGV: "a crash in native code (a library or driver bug, or memory corruption)",
    signal.SIGABRT: "native code aborted (a failed assertion in C++/CUDA code, or an uncaught C++ exception)",
    signal.SIGBUS: "a bus error: usually shared memory (/dev/shm) too small, or a file mapped into memory that shrank",
    signal.SIGTERM: "asked to stop (a job scheduler's time limit, or someone ran `kill`)",
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGFPE: "an arithmetic fault in native code",
    signal.SIGILL: "an illegal instruction: a binary built for a newer CPU than this one",
}


def describe_exit(exitcode: int | None) -> str:
    """The case process's end in words: its exit code, or the signal that killed it and what that usually means."""
    if exitcode is None:
        return "did not exit"
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"was killed by signal {-exitcode}"
    meaning = SIGNAL_MEANINGS.get(sig, "")
    return f"was killed by signal {sig.name} ({-exitcode})" + (f": {meaning}" if meaning else "")
