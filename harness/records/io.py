"""The one atomic write, and reading a record back.

Everything backprop-bench puts on disk goes through `_write`: a temp file in the destination's directory (same
file system, so the final step is one rename or link), written, flushed and fsynced, then put into place. A
crash at any point leaves either the old state or the whole new file under the final name, never a partial one.
Two ways to put it into place:

- `write_new_file`: a hard link, which fails with FileExistsError rather than replace what is there — records and
  fit.json, which are data and never overwritten;
- `replace_file`: a rename over the old file — what is regenerated from the folder (tables, plots, claims.md):
  a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from harness.records.safe_fs import check_component, open_dir, write_base

# Records are immutable data, readable by everyone sharing the folder; generated files are replaced, not edited.
RECORD_MODE, GENERATED_MODE = 0o444, 0o644
# What a write in progress is called: a process killed mid-write leaves one (bench submit removes them).
TEMP_PREFIX = ".tmp-"


def _write(final: Path, data: bytes, mode: int, place) -> Path:
    # The destination's folder is opened once, each component below the results folder without following a
    # link (harness/records/safe_fs.py), and the temp file and its placing are relative to that descriptor:
    # a symlink planted as site/, tables/ or a hardware folder is refused, never written through.
    base = write_base(final)
    name = check_component(final.name)
    relative = os.path.relpath(final.parent, base)
    dir_fd = open_dir(base, "" if relative == "." else relative)
    tmp = f"{TEMP_PREFIX}{secrets.token_hex(6)}{final.suffix}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        place(tmp, name, dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):  # linked: the temp name goes; replaced: it is already gone
            os.unlink(tmp, dir_fd=dir_fd)
        os.close(dir_fd)
    return final


def _link(tmp: str, name: str, dir_fd: int) -> None:
    os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)


def _replace(tmp: str, name: str, dir_fd: int) -> None:
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def write_new_file(final: Path, data: bytes) -> Path:
    """Write atomically and never over an existing file (FileExistsError if `final` exists); read-only."""
    return _write(final, data, RECORD_MODE, _link)


def replace_file(path: Path, data: bytes | str) -> Path:
    """Write atomically over whatever `path` holds (text is written as UTF-8)."""
    return _write(path, data.encode() if isinstance(data, str) else data, GENERATED_MODE, _replace)


def record_bytes(record: dict) -> bytes:
    """The one serialisation of a record on disk: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_record(record: dict, directory: Path) -> Path:
    """Into a run's output_dir, under the name the results folder gives it too (folder.record_filename):
    atomically, never over an existing record (FileExistsError)."""
    from harness.records.folder import record_filename

    data = record_bytes(record)
    return write_new_file(directory / record_filename(record, data), data)


def read_record(path: Path) -> dict:
    """A record file as written (no validation or migration: harness.records.validate.load_bytes does those)."""
    with open(path) as f:
        return json.load(f)
