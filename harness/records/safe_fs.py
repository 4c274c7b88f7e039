"""Paths and file access in a shared results folder, where any submitter may have planted a name or a link.

- `safe_name`: the one function every path component taken from a record goes through (lower-case letters,
  digits and '-', bounded length; never empty, '.', '..' or a separator).
- `read_regular`: reads a regular file only (lstat first, then O_NOFOLLOW | O_NONBLOCK, size checked before and
  while reading), and says what it skipped: a FIFO would hang a reader, /dev/zero would fill its memory.
- `open_dir`: a directory below the folder, each component opened with O_NOFOLLOW, so a write never follows a
  planted symlink (`site/`, `tables/`, `plots/`, a hardware folder); harness/records/io.py writes through it.
- `confined`: while it is active, every write inside that folder is held to these rules (the commands that
  write into a results folder enter it).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Iterator

MAX_NAME = 80  # a path component made from a record: hardware keys, labels (today's longest: 31)
_NOT_SAFE = re.compile(r"[^a-z0-9]+")

_CONFINED: contextvars.ContextVar[Path | None] = contextvars.ContextVar("results_folder", default=None)


class UnsafePath(OSError):
    """A path refused: a link, a special file, a name escaping the folder. An OSError, so every command's
    handler of file errors says what and where in one line."""

    def __init__(self, path: os.PathLike | str, reason: str):
        super().__init__(errno.EPERM, reason, str(path))


def safe_name(text: object, max_len: int = MAX_NAME) -> str:
    """A path component from any text: runs of anything but a-z and 0-9 become one '-'. Longer than `max_len`,
    it is cut and ends in 8 hex digits of the whole, so two long names stay apart."""
    name = _NOT_SAFE.sub("-", str(text).lower()).strip("-") or "unknown"
    if len(name) > max_len:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: max_len - 9].rstrip('-')}-{digest}"
    return name


def check_component(name: str) -> str:
    """A file name this harness composed (from safe names, hex ids and fixed words): refuse anything else."""
    if name in ("", ".", "..") or "/" in name or "\x00" in name or len(name) > 255:
        raise UnsafePath(name, "not a single file name")
    return name


def inside(root: Path, path: Path) -> bool:
    """Whether `path` lies inside `root` once '.' and '..' are taken out (links are dealt with by open_dir)."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def kind(mode: int) -> str:
    """What a file is, in words, for the line that says it was skipped."""
    for test, word in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return word
    return "regular file" if stat.S_ISREG(mode) else "special file"


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; UnsafePath naming what it is otherwise."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(path, f"a {kind(st.st_mode)}, not a regular file: not read")
    if st.st_size > limit:
        raise UnsafePath(path, f"{st.st_size} bytes is over the {limit}-byte limit: not read")
    # O_NONBLOCK: a FIFO swapped in after the lstat does not hang the open; O_NOFOLLOW: nor does a link
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(path, f"a {kind(st.st_mode)}, not a regular file: not read")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:  # grew after the check
                raise UnsafePath(path, f"over the {limit}-byte limit: not read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_below(fd: int, part: str, where: Path, create: bool) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o777, dir_fd=fd)
        return os.open(part, flags, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = os.lstat(part, dir_fd=fd)
            raise UnsafePath(where, f"a {kind(st.st_mode)} where a folder belongs: refused (never followed)") from None
        raise


def open_dir(base: Path, relative: Path | str = "", create: bool = True) -> int:
    """A file descriptor of base/relative. `base` is opened as given (a results folder may itself be a link to
    a mounted share: the user's choice); each component below it is opened without following links and is
    created when missing. The caller closes the descriptor."""
    if create:
        base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = base
    try:
        for part in Path(relative).parts:
            check_component(part)
            where = where / part
            below = _open_below(fd, part, where, create)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def confined(root: Path) -> Iterator[None]:
    """While active, a write inside `root` opens every folder below `root` without following links."""
    token = _CONFINED.set(Path(root))
    try:
        yield
    finally:
        _CONFINED.reset(token)


def write_base(final: Path) -> Path:
    """The folder a write to `final` is checked from: the confining results folder when `final` lies inside it,
    else the file's own folder (a run's output_dir, a --out chosen outside the folder)."""
    root = _CONFINED.get()
    if root is not None and inside(root, final.parent):
        return root
    return final.parent


def lstat_kind(path: Path) -> str | None:
    """What is at `path` without following a link (None: nothing)."""
    try:
        return kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
