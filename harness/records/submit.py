"""`bench submit`: validate records and copy them into a results folder, never losing or replacing anything.

Validation happens before the lock is taken (it only reads); every write happens under the folder's lock, as
a temp file linked into place (harness.records.io.write_new_file), so several people submitting into one folder at
once all land and nobody sees half a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records import folder as results_folder
from harness.records.io import record_bytes, write_new_file
from harness.records.validate import RecordInvalid, load_bytes

TAKEN, DUPLICATE, REFUSED = "taken", "duplicate", "refused"


@dataclass
class Outcome:
    source: Path
    status: str  # taken | duplicate | refused
    reason: str = ""
    dest: Path | None = None

    def line(self) -> str:
        if self.status == TAKEN:
            return f"taken     {self.source} -> {self.dest}"
        if self.status == DUPLICATE:
            return f"duplicate {self.source}: same content already stored as {self.dest}; not stored twice"
        return f"refused   {self.source}: {self.reason}"


def expand(paths: list[Path]) -> tuple[list[Path], list[Outcome]]:
    """Files as given; a directory (a run's output_dir) stands for the *.json records directly inside it."""
    files: list[Path] = []
    refused: list[Outcome] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.glob("*.json") if q.is_file() and not q.name.startswith("."))
            if not found:
                refused.append(Outcome(p, REFUSED, "file: a directory with no *.json records in it"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            refused.append(Outcome(p, REFUSED, "file: no such file or directory"))
    return files, refused


def submit(paths: list[Path], root: Path) -> list[Outcome]:
    files, outcomes = expand(paths)
    accepted: list[tuple[Path, dict, bytes]] = []
    for path in files:
        try:
            record = load_bytes(path.read_bytes())
        except RecordInvalid as exc:
            outcomes.append(Outcome(path, REFUSED, str(exc)))
            continue
        except OSError as exc:
            outcomes.append(Outcome(path, REFUSED, f"file: cannot be read ({exc.strerror})"))
            continue
        accepted.append((path, record, record_bytes(record)))
    if not accepted:  # nothing to write: leave the folder exactly as it was, lock file included
        return outcomes

    try:
        lock = results_folder.locked(root)
        lock.__enter__()
    except OSError as exc:  # a read-only share, a missing mount: refuse everything, change nothing
        return outcomes + [
            Outcome(path, REFUSED, f"file: the results folder {root} is not writable ({exc.strerror})")
            for path, _, _ in accepted
        ]
    try:
        for path, record, data in accepted:
            dest = results_folder.record_path(root, record, data)
            if dest.exists():
                outcomes.append(Outcome(path, DUPLICATE, dest=dest))
                continue
            same_id = sorted(dest.parent.glob(f"*_{record['id']}_*.json")) if dest.parent.is_dir() else []
            if same_id:
                outcomes.append(
                    Outcome(
                        path,
                        REFUSED,
                        f"id: {record['id']} is already stored as {same_id[0]} with "
                        "different content; one of the two was edited",
                    )
                )
                continue
            try:
                write_new_file(dest, data)
            except FileExistsError:  # another writer outside the lock (e.g. a different lock-less tool)
                outcomes.append(Outcome(path, DUPLICATE, dest=dest))
                continue
            except OSError as exc:
                outcomes.append(
                    Outcome(
                        path, REFUSED, f"file: could not be written to {dest} ({exc.strerror}); nothing was left behind"
                    )
                )
                continue
            outcomes.append(Outcome(path, TAKEN, dest=dest))
    finally:
        lock.__exit__(None, None, None)
    return outcomes
