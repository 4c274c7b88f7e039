"""Published measurements as bench estimate's test set: the rows of harness/predict/published.json (measured on GPUs
by others), each predicted from its overrides, beside the published figure, with the error; the median and the
largest absolute error over the rows the estimator can express. `bench estimate --published` prints them, the site
shows them (harness/report/site/published_page.py) and tests/test_published.py holds them to stated bounds.

A row whose overrides the harness refuses (a setup it cannot express yet) says why: the refusal itself, and what
would express it. Nothing here is fitted to the rows: what is added to a prediction for the quantity a source
reports comes from a source named in the file. No torch (a traced prediction comes through `fallback`).

The traces the rows need are recorded in published_traced.json (`bench estimate --published --save-traces`), so
that the site, built without torch, shows every row; tests/test_published.py fails when a recorded trace is not
what the code traces today.
"""

from __future__ import annotations

import json
import statistics
from functools import lru_cache
from pathlib import Path

from harness.config.case import config_hash
from harness.config.fields import ConfigError
from harness.config.groups import BenchConfig
from harness.predict import estimate

PUBLISHED_FILE = Path(__file__).with_name("published.json")
TRACED_FILE = Path(__file__).with_name("published_traced.json")
# what each quantity a source reports is predicted by (the file's `quantities` say how each is measured)
PREDICTED_BY = {
    "peak_reserved": "peak_step_bytes",
    "process_training": "peak_step_bytes",
    "process_inference": "peak_infer_bytes",
}


@lru_cache(maxsize=1)
def published() -> dict:
    """The file, read once."""
    return json.loads(PUBLISHED_FILE.read_text())


def trace_key(cfg: BenchConfig, device_type: str) -> str:
    return f"{config_hash(cfg.to_dict())}:{device_type}"


@lru_cache(maxsize=1)
def recorded_traces() -> dict:
    """The recorded traces, read once ({} before any was recorded)."""
    return json.loads(TRACED_FILE.read_text()) if TRACED_FILE.exists() else {}


def recorded(cfg: BenchConfig, device_type: str) -> dict:
    """A Fallback that reads the recorded traces (no torch)."""
    missing = {"activations_bytes": None, "formula": "no recorded trace (bench estimate --published traces it)"}
    return recorded_traces().get(trace_key(cfg, device_type), missing)


def recording(fallback: estimate.Fallback, into: dict) -> estimate.Fallback:
    """`fallback`, keeping each answer in `into` by trace_key (what --save-traces writes)."""

    def run(cfg: BenchConfig, device_type: str) -> dict:
        into[trace_key(cfg, device_type)] = out = fallback(cfg, device_type)
        return out

    return run


def row_prediction(row: dict, fallback: estimate.Fallback | None) -> dict:
    """One row: {id, published_bytes, predicted_bytes, error (predicted / published - 1), peak_moment, reason}; a
    row that cannot be expressed, or has no figure, has predicted_bytes None and the reason."""
    from harness.config.compose import make_case

    out = {"id": row["id"], "published_bytes": int(row["published"] * row["unit_bytes"]), "peak_moment": None}
    try:
        cfg = make_case(row["overrides"]).config
    except ConfigError as exc:
        refused = str(exc).split("; allowed:")[0]  # the refusal, without the list of what is allowed
        needs = f"; needs {row['needs']}" if row.get("needs") else ""
        return {**out, "predicted_bytes": None, "error": None, "reason": f"cannot be expressed yet: {refused}{needs}"}
    predicted = estimate.step(cfg, "cuda", fallback)
    value = predicted[PREDICTED_BY[row["quantity"]]]
    if value is None:
        reason = f"no figure: {predicted['formulas']['activations_bytes']}"
        return {**out, "predicted_bytes": None, "error": None, "reason": reason}
    value += sum(published()["overheads"][name]["bytes"] for name in row["adds"])
    moment = predicted["peak_moment"] if PREDICTED_BY[row["quantity"]] == "peak_step_bytes" else "inference"
    return {
        **out,
        "predicted_bytes": value,
        "error": value / out["published_bytes"] - 1,
        "peak_moment": moment,
        "reason": None,
        "source": predicted["activations_source"],
    }


def evaluate(fallback: estimate.Fallback | None = None) -> dict:
    """Every row predicted, and over the rows with a prediction: n, the median and the largest |error|."""
    rows = [{**row, **row_prediction(row, fallback)} for row in published()["rows"]]
    errors = [abs(r["error"]) for r in rows if r["error"] is not None]
    return {
        "rows": rows,
        "n_expressed": len(errors),
        "median_abs_error": statistics.median(errors) if errors else None,
        "max_abs_error": max(errors) if errors else None,
        "quantities": published()["quantities"],
        "overheads": published()["overheads"],
    }
