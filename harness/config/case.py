"""What a case is once planned: its overrides, its resolved config as plain data, the suite it came from.
Built once by harness/config/compose.py (the only module that runs Hydra) and passed on as it is."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Case:
    """One case, composed and validated once when it is planned, then passed on as it is: to the process that
    measures it (which needs no Hydra), to its record, to the resume check."""

    overrides: tuple[str, ...]  # what reproduces it: `bench run` + these
    config: dict  # the resolved config as plain data, as the record stores it
    suite: str | None = None

    @property
    def cfg(self) -> DictConfig:
        """Attribute access for the measuring code (cfg.model.depth), from the plain data."""
        return OmegaConf.create(self.config)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def canonical_json(obj: Any) -> str:
    """The one text a hash is taken of: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def config_hash(config: dict) -> str:
    """16 hex digits of the resolved config alone: repeats of one configuration share it."""
    # A single-process case hashes as it did before the parallel group existed, so its earlier records still
    # resume and group with it; a multi-rank case's parallel section is part of what it measures.
    if (config.get("parallel") or {}).get("name") == "none":
        config = {k: v for k, v in config.items() if k != "parallel"}
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]
