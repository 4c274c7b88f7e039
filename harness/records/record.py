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
from harness.records.validate import check


@dataclass(frozen=True, eq=False)
class Record:
    data: dict  # the validated record at the current schema version, as plain data
    path: Path | None = None  # where it was read from (None: made in memory)

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> Record:
        """Migrate (older schema versions) and validate: RecordInvalid naming the field otherwise."""
        return cls(check(data), path)

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
    def checks(self) -> list[dict]:
        return self.data.get("checks") or []

    @property
    def predicted(self) -> dict:
        return self.data.get("predicted") or {}

    @property
    def command(self) -> str:
        return self.data.get("command") or ""

    @property
    def overrides(self) -> list[str]:
        return list(self.data.get("overrides") or [])

    def get(self, dotted: str, default: Any = None) -> Any:
        """A field by its dotted path from the record's top (`metrics.memory.peak_train_bytes`)."""
        return lookup(self.data, dotted, default)
