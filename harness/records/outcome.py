"""What a case's process hands back: its measurement, or how it failed and where. Plain data (it crosses a pipe and,
for a multi-rank case, a file); the record is made of it once, by the parent (harness/records/build.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OK, OOM, ERROR = "ok", "oom", "error"


@dataclass
class Measurement:
    status: str  # ok | oom | error
    provenance: dict  # where it ran (harness/measure/provenance.py)
    metrics: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)  # what was derived on the way: targets, kernels, dtypes
    checks: list = field(default_factory=list)
    error: dict | None = None  # {type, message, phase, ...} when status is not ok

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Measurement:
        return cls(**data)


def failure(provenance: dict, kind: str, message: str, phase: str | None, **more) -> Measurement:
    """A case that did not run to the end: an error with its type, message and the stage it was in."""
    return Measurement(ERROR, provenance, error={"type": kind, "message": message, "phase": phase, **more})
