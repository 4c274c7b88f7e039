"""What a case is once planned: its overrides, its typed config, the suite it came from. Built once by
harness/config/compose.py (the only module that runs Hydra) and passed on as it is, to the case's own process too
(pickled: no Hydra there)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.config.groups import BenchConfig


@dataclass(frozen=True)
class Case:
    """One case, composed and validated once when it is planned, then passed on as it is: to the process that
    measures it, to its record, to the resume check."""

    overrides: tuple[str, ...]  # what reproduces it: `bench run` + these
    config: BenchConfig  # validated; its launcher is None (how a case starts is not part of it)
    suite: str | None = None

    @property
    def config_dict(self) -> dict:
        """The config as plain data, as the record stores it."""
        return self.config.to_dict()

    @property
    def config_hash(self) -> str:
        return config_hash(self.config_dict)


def canonical_json(obj: Any) -> str:
    """The one text a hash is taken of: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


# Fields added after records existed, with the value that means "as before": at that value a config hashes as it
# did without the field, so earlier records of the same configuration still resume and group with it.
ADDED_FIELDS = {  # head: null = the model_type's default
    ("method", "paged"): False,
    ("model", "head"): None,
    ("workload", "zero_grad"): "set_to_none",
}


def config_hash(stored: dict) -> str:
    """16 hex digits of a config as a record stores it (plain data: older records' too, with the fields of their
    time) alone: repeats of one configuration share it."""
    # A single-process case hashes as it did before the parallel group existed, so its earlier records still
    # resume and group with it; a multi-rank case's parallel section is part of what it measures.
    if (stored.get("parallel") or {}).get("name") == "none":
        stored = {k: v for k, v in stored.items() if k != "parallel"}
    for (group, name), before in ADDED_FIELDS.items():
        section = stored.get(group)
        if isinstance(section, dict) and name in section and section[name] == before:
            stored = {**stored, group: {k: v for k, v in section.items() if k != name}}
    return hashlib.sha256(canonical_json(stored).encode()).hexdigest()[:16]
