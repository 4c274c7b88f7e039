"""Predicted beside measured: the analytic model's figures for a record's config (harness/predict/analytic.py, plain
functions of the config, without torch) and where the measurement falls outside their tolerance — a finding
about the model or the harness, never hidden.

Called by whoever writes a record (harness/measure/case.py passes the result to build_record) and by the
migrations that give older records the block (harness/records/validate.py); the schema only places it.
"""

from __future__ import annotations

from harness.predict import analytic
from harness.records.schema import disagreements, finite


def prediction(config: dict, provenance: dict, resolved: dict | None = None, metrics: dict | None = None) -> dict:
    """The record's `predicted` block: figures for the config on the provenance's device type (and the SDPA kernel
    that ran, from resolved.attention_kernel), with `comparison` against `metrics`."""
    device_type = (provenance or {}).get("device_type") or "cpu"
    kernel = ((resolved or {}).get("attention_kernel") or {}).get("fwd_train")
    try:
        predicted = analytic.predict(finite(config), device_type, kernel)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # a config the model cannot read: say so
        predicted = {"memory": {}, "flop_ratio": None, "unavailable_reason": f"{type(exc).__name__}: {exc}"}
    predicted["comparison"] = analytic.compare(predicted, finite(metrics or {}))
    return finite(predicted)


def attach_prediction(record: dict) -> dict:
    """Give a record (in place) its `predicted` block and flags.predicted_disagrees, from its own fields."""
    predicted = prediction(
        record.get("config"), record.get("provenance") or {}, record.get("resolved"), record.get("metrics")
    )
    record["predicted"] = predicted
    record.setdefault("flags", {})["predicted_disagrees"] = disagreements(predicted)
    return record
