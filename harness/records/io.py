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

import json
import os
import tempfile
from pathlib import Path

# Records are immutable data, readable by everyone sharing the folder; generated files are replaced, not edited.
RECORD_MODE, GENERATED_MODE = 0o444, 0o644


def _write(final: Path, data: bytes, mode: int, place) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=final.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        place(tmp, final)
    finally:
        if os.path.lexists(tmp):  # linked: the temp name goes; replaced: it is already gone
            os.unlink(tmp)
    return final


def write_new_file(final: Path, data: bytes) -> Path:
    """Write atomically and never over an existing file (FileExistsError if `final` exists); read-only."""
    return _write(final, data, RECORD_MODE, os.link)


def replace_file(path: Path, data: bytes | str) -> Path:
    """Write atomically over whatever `path` holds (text is written as UTF-8)."""
    return _write(path, data.encode() if isinstance(data, str) else data, GENERATED_MODE, os.replace)


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
