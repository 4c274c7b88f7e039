"""`bench submit`: validate records and copy them into a results folder, never losing or replacing anything.

Validation happens before the lock is taken (it only reads); every write happens under the folder's lock, as
a temp file linked into place (harness.records.io.write_new_file), so several people submitting into one folder at
once all land and nobody sees half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.records import folder as results_folder
from harness.records import signing
from harness.records.caveats import caveats
from harness.records.io import TEMP_PREFIX, record_bytes, write_new_file
from harness.records.safe_fs import confined, lstat_kind, read_regular
from harness.records.validate import MAX_RECORD_BYTES, RecordInvalid, load_bytes

TAKEN, DUPLICATE, REFUSED, CLEANED = "taken", "duplicate", "refused", "cleaned"


@dataclass
class Outcome:
    source: Path
    status: str  # taken | duplicate | refused
    reason: str = ""
    dest: Path | None = None
    signer: str | None = None
    caveats: dict[str, str] = field(default_factory=dict)  # noisy / contended / dirty: why (records/caveats.py)

    def warning(self) -> str | None:
        """For a record taken (or already there) that is not a clean measurement: which, and why."""
        if not self.caveats or self.status not in (TAKEN, DUPLICATE):
            return None
        return f"warning   {self.source}: {'; '.join(self.caveats.values())} (--strict refuses such records)"

    def line(self) -> str:
        if self.status == TAKEN:
            return f"taken     {self.source} -> {self.dest}" + (f" (signed by {self.signer})" if self.signer else "")
        if self.status == CLEANED:
            return f"cleaned   {self.source}: {self.reason}"
        if self.status == DUPLICATE:
            return f"duplicate {self.source}: same content already stored as {self.dest}; not stored twice"
        return f"refused   {self.source}: {self.reason}"


def expand(paths: list[Path]) -> tuple[list[Path], list[Outcome]]:
    """Files as given; a directory (a run's output_dir) stands for the *.json records directly inside it."""
    files: list[Path] = []
    refused: list[Outcome] = []
    for p in paths:
        found = lstat_kind(p)
        if found == "directory":
            found_files = sorted(q for q in p.glob("*.json") if not q.name.startswith("."))
            if not found_files:
                refused.append(Outcome(p, REFUSED, "file: a directory with no *.json records in it"))
            files.extend(found_files)
        elif found is None:
            refused.append(Outcome(p, REFUSED, "file: no such file or directory"))
        else:  # read_regular names what is not a regular file
            files.append(p)
    return files, refused


def _signature(path: Path, data: bytes, root: Path, key: Path | None) -> tuple[bytes | None, str | None]:
    """(signature to store, signer) for one record: made with `key`, or the one beside the source file, which
    must verify over exactly the bytes stored. Refused (SigningError) when the folder requires one and there is
    none, or when one does not verify."""
    required = signing.settings(root).require_signatures  # invalid settings refuse every record, naming the field
    signers = signing.allowed_signers(root)
    if key is not None:
        if signers is None:
            raise signing.SigningError(f"{root / signing.ALLOWED_SIGNERS} is missing: a signature could not be checked")
        signature = signing.sign(data, key)
    else:
        signature = signing.read_signature(path)
    if signature is None:
        if required:
            raise signing.SigningError(f"{root} requires signed records (settings.json); submit with --sign KEY")
        return None, None
    if signers is None:
        raise signing.SigningError(f"signed, but {root / signing.ALLOWED_SIGNERS} is missing: it cannot be checked")
    if key is None and read_regular(path, MAX_RECORD_BYTES) != data:
        raise signing.SigningError("the signature beside it covers the file as it is, not as it would be stored")
    return signature, signing.signer(data, signature, signers)


def _prepare(path: Path, root: Path, key: Path | None) -> tuple[dict, bytes, bytes | None, str | None]:
    record = load_bytes(read_regular(path, MAX_RECORD_BYTES))
    data = record_bytes(record)
    return (record, data, *_signature(path, data, root, key))


def _why(exc: BaseException) -> str:
    """Any failure as `field: reason`, the form every refusal takes."""
    if isinstance(exc, RecordInvalid):
        return str(exc)
    if isinstance(exc, signing.SigningError):
        return f"signature: {exc}"
    if isinstance(exc, OSError):
        return f"file: cannot be read ({exc.strerror or exc})"
    return f"file: {type(exc).__name__} while reading it: {str(exc)[:200]}"


def _store(path: Path, root: Path, record: dict, data: bytes, signature: bytes | None, signer) -> Outcome:
    dest = results_folder.record_path(root, record, data)
    if lstat_kind(dest) is not None:
        return Outcome(path, DUPLICATE, dest=dest)
    same_id = sorted(dest.parent.glob(f"*_{record['id']}_*.json")) if dest.parent.is_dir() else []
    if same_id:
        return Outcome(
            path,
            REFUSED,
            f"id: {record['id']} is already stored as {same_id[0]} with different content; one of the two was edited",
        )
    try:
        if signature is not None:  # first: a record whose signature is not yet there would read as unsigned
            sig_path = dest.with_name(dest.name + signing.SIG_SUFFIX)
            if lstat_kind(sig_path) is not None:
                os.unlink(sig_path)  # left by a submit killed between the two writes
            write_new_file(sig_path, signature)
        write_new_file(dest, data)
    except FileExistsError:  # another writer outside the lock (e.g. a different lock-less tool)
        return Outcome(path, DUPLICATE, dest=dest)
    except OSError as exc:
        return Outcome(path, REFUSED, f"file: could not be written to {dest} ({exc.strerror}); nothing was left behind")
    return Outcome(path, TAKEN, dest=dest, signer=signer)


def clean_temp_files(root: Path) -> list[Path]:
    """Temp files of writes that never finished (a submit killed mid-write), under the lock: no submit is
    writing now, and only submit writes under records/."""
    removed = []
    records_dir = root / results_folder.RECORDS
    if lstat_kind(records_dir) != "directory":
        return removed
    for folder in os.scandir(records_dir):
        if folder.is_dir(follow_symlinks=False):
            for entry in os.scandir(folder.path):
                if entry.name.startswith(TEMP_PREFIX):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


STRICT = "strict: "


def _refused_strictly(accepted: list[tuple]) -> list[Outcome]:
    """--strict, where some record is noisy, contended or dirty: every record of the submission refused, those
    with why, the others because nothing of a run with such records is copied."""
    weak = sum(bool(caveats(record)) for _, record, *_ in accepted)
    refused = []
    for path, record, *_ in accepted:
        found = caveats(record)
        why = "; ".join(found.values()) if found else f"clean, but {weak} other record(s) here are not"
        refused.append(Outcome(path, REFUSED, f"{STRICT}{why}; nothing was copied", caveats=found))
    return refused


def submit(paths: list[Path], root: Path, key: Path | None = None, report=None, strict: bool = False) -> list[Outcome]:
    """Every file gets one Outcome, whatever happens to it; `report` (if given) is called with each as soon as it
    is decided, so an interrupted submit has already said what it did. `strict`: where any valid record is
    noisy, contended or dirty (harness/records/caveats.py), none is copied."""
    outcomes: list[Outcome] = []

    def decided(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if report is not None:
            report(outcome)

    files, refused = expand(paths)
    for outcome in refused:
        decided(outcome)
    accepted = []
    for path in files:
        try:
            accepted.append((path, *_prepare(path, root, key)))
        except Exception as exc:  # one file's problem, whatever it is, never stops the batch
            decided(Outcome(path, REFUSED, _why(exc)))
    if strict and any(caveats(record) for _, record, *_ in accepted):
        for outcome in _refused_strictly(accepted):
            decided(outcome)
        return outcomes  # written: nothing, not even the lock file
    if not accepted:  # nothing to write: leave the folder exactly as it was, lock file included
        return outcomes
    try:
        lock = results_folder.locked(root)
        lock.__enter__()
    except OSError as exc:  # a read-only share, a missing mount, a planted lock: refuse everything, change nothing
        for path, *_ in accepted:
            decided(Outcome(path, REFUSED, f"file: the results folder {root} is not writable ({exc.strerror})"))
        return outcomes
    try:
        with confined(root):
            for stale in clean_temp_files(root):
                decided(Outcome(stale, CLEANED, "a temp file a killed submit left"))
            for path, record, data, signature, signer in accepted:
                try:
                    stored = _store(path, root, record, data, signature, signer)
                    stored.caveats = caveats(record)
                    decided(stored)
                except Exception as exc:
                    decided(Outcome(path, REFUSED, f"file: not stored ({type(exc).__name__}: {str(exc)[:200]})"))
    finally:
        lock.__exit__(None, None, None)
    return outcomes
