"""The typed view every reader takes of a record: read and migrated once (harness/records/validate.py), its fields
as attributes, its config as the typed tree (harness/config/groups.BenchConfig). `to_dict` gives back the record
exactly as stored, so what a reader writes from it (tables, site, citations) is what the file says."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.groups import BenchConfig
from harness.records.schema import lookup
from harness.records.validate import RecordInvalid, check


@dataclass(frozen=True, eq=False)
class Record:
    """A record and where it lies. `from_dict` is the way in for what is read from a results folder; the bare
    constructor wraps a record as written without checking it (a run's own records, error ones included, for
    the summary printed at the end of a sweep)."""

    data: dict  # the validated record at the current schema version, as plain data
    path: Path | None = None  # where it was read from (None: made in memory)
    signer: str | None = None  # the allowed_signers name whose signature verified (harness/records/signing.py)

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None, signer: str | None = None) -> Record:
        """Migrate (older schema versions) and validate, the typed config included: RecordInvalid naming the
        field otherwise, so that no reader meets a config it cannot read."""
        record = cls(check(data), path, signer)
        try:
            record.config  # noqa: B018  (built once here, cached: readers take it from the view)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordInvalid("config", f"not a configuration this harness reads ({type(exc).__name__}: {exc})")
        return record

    def to_dict(self) -> dict:
        return self.data

    @functools.cached_property
    def config(self) -> BenchConfig:
        return BenchConfig.from_dict(self.data["config"])

    @property
    def config_dict(self) -> dict:
        """The config as stored: what its hash was taken of."""
        return self.data["config"]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def config_hash(self) -> str:
        return self.data["config_hash"]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def schema_version(self) -> str:
        return self.data["schema_version"]

    @property
    def schema_major(self) -> int:
        """The major version: records of one major are comparable (tables are written per major)."""
        return int(str(self.schema_version).split(".")[0])

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def oom_phase(self) -> str | None:
        """The phase that ran out of memory; None for a record that did not."""
        return (self.error or {}).get("phase") if self.status == "oom" else None

    @property
    def provenance(self) -> dict:
        return self.data["provenance"]

    @property
    def metrics(self) -> dict:
        return self.data.get("metrics") or {}

    @property
    def resolved(self) -> dict:
        return self.data.get("resolved") or {}

    @property
    def flags(self) -> dict:
        return self.data.get("flags") or {}

    @property
    def error(self) -> dict | None:
        return self.data.get("error")

    @property
    def checks_failed(self) -> list[str]:
        return list(self.flags.get("checks_failed") or [])

    @property
    def noisy(self) -> list[str]:
        """The phases whose timings were flagged noisy."""
        return list(self.flags.get("noisy") or [])

    @property
    def checks(self) -> list[dict]:
        return self.data.get("checks") or []

    @property
    def checks_passed(self) -> int:
        return sum(bool(c["passed"]) for c in self.checks)

    @property
    def predicted(self) -> dict:
        return self.data.get("predicted") or {}

    @property
    def command(self) -> str:
        return self.data.get("command") or ""

    @property
    def overrides(self) -> list[str]:
        return list(self.data.get("overrides") or [])

    def source(self, root: Path) -> str:
        """Where it was read from, relative to the results folder `root` where it lies inside it."""
        if self.path is None:
            return ""
        return self.path.relative_to(root).as_posix() if self.path.is_relative_to(root) else str(self.path)

    def get(self, dotted: str, default: Any = None) -> Any:
        """A field by its dotted path from the record's top (`metrics.memory.peak_train_bytes`)."""
        return lookup(self.data, dotted, default)
