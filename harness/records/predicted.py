"""Predicted beside measured: the analytic model's figures for a record's config (harness/predict/analytic.py, plain
functions of the config, without torch) and where the measurement falls outside their tolerance — a finding
about the model or the harness, never hidden.

Called by the one record builder (harness/records/build.py) and by the migrations that give older records the
block (harness/records/validate.py); the schema only places it.
"""

from __future__ import annotations

from harness.config.groups import BenchConfig
from harness.predict import analytic
from harness.records.schema import disagreements, finite

# what a config the analytic model cannot read raises (a record's stored config too: from_dict): it says so
UNREADABLE = (KeyError, TypeError, ValueError, ArithmeticError)


def unavailable(exc: Exception) -> dict:
    return {"memory": {}, "flop_ratio": None, "unavailable_reason": f"{type(exc).__name__}: {exc}"}


def prediction(cfg: BenchConfig, provenance: dict, resolved: dict | None = None, metrics: dict | None = None) -> dict:
    """The record's `predicted` block: figures for the config on the provenance's device type (and the SDPA kernel
    that ran, from resolved.attention_kernel), with `comparison` against `metrics`."""
    device_type = (provenance or {}).get("device_type") or "cpu"
    kernel = ((resolved or {}).get("attention_kernel") or {}).get("fwd_train")
    try:
        predicted = analytic.predict(cfg, device_type, kernel)
    except UNREADABLE as exc:
        predicted = unavailable(exc)
    predicted["comparison"] = analytic.compare(predicted, finite(metrics or {}))
    return finite(predicted)


def attach_prediction(record: dict) -> dict:
    """Give a record (in place) its `predicted` block and flags.predicted_disagrees, from its own fields (an older
    record's config read with the defaults of the fields it lacks)."""
    provenance, metrics = record.get("provenance") or {}, record.get("metrics")
    try:
        cfg = BenchConfig.from_dict(record.get("config"))
    except UNREADABLE as exc:  # no figure to compare
        predicted = {**unavailable(exc), "comparison": []}
    else:
        predicted = prediction(cfg, provenance, record.get("resolved"), metrics)
    record["predicted"] = predicted
    record.setdefault("flags", {})["predicted_disagrees"] = disagreements(predicted)
    return record
