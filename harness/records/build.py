"""The one place a record is made: a planned case and what its process measured (or how it failed), with the
analytic model's prediction for it (harness/records/predicted.py) and the flags that follow. Every writer — a
sweep's parent, a SLURM job, a multi-rank case — calls `build_record`; the layout is harness/records/schema.py."""

from __future__ import annotations

from harness.config.case import Case
from harness.records.outcome import Measurement
from harness.records.predicted import prediction
from harness.records.schema import SCHEMA_VERSION, command_line, disagreements, finite, is_contended, record_id


def build_record(case: Case, measured: Measurement) -> dict:
    """The record of `case`: its config as stored, the measurement, the prediction compared with it."""
    config = case.config_dict
    metrics, checks = measured.metrics or {}, measured.checks or []
    predicted = prediction(case.config, measured.provenance, measured.resolved, metrics)
    noisy = sorted(p for p, t in metrics.get("time", {}).items() if t.get("noisy"))
    return finite(
        {
            "schema_version": SCHEMA_VERSION,
            "id": record_id(config, measured.provenance),
            "config_hash": case.config_hash,
            "status": measured.status,
            "error": measured.error,
            "config": config,
            "resolved": measured.resolved or {},
            "command": command_line(list(case.overrides)),
            "overrides": list(case.overrides),
            "provenance": measured.provenance,
            "metrics": metrics,
            "checks": checks,
            "flags": {
                "noisy": noisy,
                "contended": bool(is_contended((measured.provenance or {}).get("load"))),
                "checks_failed": [c["name"] for c in checks if not c["passed"]],
                "warnings": list(metrics.get("warnings", [])),
                "predicted_disagrees": disagreements(predicted),
            },
            "predicted": predicted,
        }
    )
