"""Who submitted a record: SSH signatures made and checked by OpenSSH's `ssh-keygen -Y` (no crypto code here).

A signed record has its signature beside it, `<record>.json.sig`, over the record's stored bytes, in the
namespace "backprop-bench". It is checked against `<folder>/allowed_signers` (the format of ssh-keygen(1)'s
ALLOWED SIGNERS: `NAME [options] KEYTYPE KEY`): the signer is the NAME whose key made the signature. A folder's
own settings (`<folder>/settings.json`) can require every new record to be signed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from harness.records.safe_fs import UnsafePath, lstat_kind, read_regular

NAMESPACE = "backprop-bench"
SIG_SUFFIX = ".sig"
ALLOWED_SIGNERS = "allowed_signers"
SETTINGS = "settings.json"
MAX_SIG_BYTES = 16_384  # an SSH signature is ~300-1500 bytes
MAX_FILE_BYTES = 1024**2  # allowed_signers, settings.json
TIMEOUT_S = 20


class SigningError(ValueError):
    """Signing or verifying could not be done, or did not verify; the text says which and why."""


class Settings(BaseModel):
    """<folder>/settings.json: what the folder asks of every submission."""

    model_config = ConfigDict(extra="forbid", strict=True)
    require_signatures: StrictBool = False


def settings(root: Path) -> Settings:
    """The folder's settings (defaults when it has none); SigningError naming the field when they are invalid."""
    path = root / SETTINGS
    if lstat_kind(path) is None:
        return Settings()
    try:
        return Settings.model_validate(json.loads(read_regular(path, MAX_FILE_BYTES)))
    except (UnsafePath, ValueError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
        detail = exc.errors(include_url=False)[0] if isinstance(exc, ValidationError) else None
        where = ".".join(map(str, detail["loc"])) if detail else "file"
        raise SigningError(f"{path}: {where}: {detail['msg'] if detail else exc}") from None


def allowed_signers(root: Path) -> Path | None:
    """The folder's allowed_signers file, when it has one (a regular file: a planted link is not trusted)."""
    path = root / ALLOWED_SIGNERS
    found = lstat_kind(path)
    if found is None:
        return None
    if found != "regular file":
        raise SigningError(f"{path}: a {found}, not a regular file: not trusted")
    return path


def signing_in_use(root: Path) -> bool:
    """Whether reports say who signed: only in a folder that names its signers (others stay as they were)."""
    return lstat_kind(root / ALLOWED_SIGNERS) is not None


def _run(args: list[str], data: bytes) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["ssh-keygen", *args], input=data, capture_output=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise SigningError("ssh-keygen (OpenSSH) is not installed: records cannot be signed or verified") from None
    except subprocess.TimeoutExpired:
        raise SigningError(f"ssh-keygen did not answer within {TIMEOUT_S} s") from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def sign(data: bytes, key: Path) -> bytes:
    """An SSH signature of `data` made with the private key file `key` (ssh-keygen -Y sign)."""
    if not Path(key).is_file():
        raise SigningError(f"{key}: no such key file")
    proc = _run(["-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE], data)
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        raise SigningError(f"ssh-keygen could not sign with {key}: {_last_line(proc)}")
    return proc.stdout


def signer(data: bytes, signature: bytes, signers: Path) -> str:
    """The name in `signers` whose key made `signature` over `data`; SigningError when none did."""
    with tempfile.NamedTemporaryFile(suffix=SIG_SUFFIX) as sig:
        sig.write(signature)
        sig.flush()
        found = _run(["-Y", "find-principals", "-s", sig.name, "-f", str(signers)], b"")
        names = found.stdout.decode(errors="replace").split()
        if found.returncode != 0 or not names:
            raise SigningError(f"signed by a key that {signers} does not name")
        for name in names:
            proc = _run(["-Y", "verify", "-f", str(signers), "-I", name, "-n", NAMESPACE, "-s", sig.name], data)
            if proc.returncode == 0:
                return name
    raise SigningError("the signature does not verify: the record was altered after it was signed")


def read_signature(record_path: Path) -> Optional[bytes]:
    """The signature stored beside a record, or None when it has none."""
    path = record_path.with_name(record_path.name + SIG_SUFFIX)
    if lstat_kind(path) is None:
        return None
    return read_regular(path, MAX_SIG_BYTES)


def stored_signer(root: Path, record_path: Path, data: bytes) -> Optional[str]:
    """Who signed a record in the folder (None: unsigned); SigningError when a signature is there and does
    not verify against the folder's allowed_signers."""
    signature = read_signature(record_path)
    if signature is None:
        return None
    signers = allowed_signers(root)
    if signers is None:
        raise SigningError(f"signed, but {root / ALLOWED_SIGNERS} is missing: the signature cannot be checked")
    return signer(data, signature, signers)
