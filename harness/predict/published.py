"""Published measurements as bench estimate's test set: the rows of harness/predict/published.json (measured on GPUs
by others), each predicted from its overrides, beside the published figure, with the error; the median and the
largest absolute error over the rows the estimator can express. `bench estimate --published` prints them, the site
shows them (harness/report/site/published_page.py) and tests/test_published.py holds them to stated bounds.

A row whose overrides the harness refuses (a setup it cannot express yet) says why: the refusal itself, and what
would express it. Nothing here is fitted to the rows: what is added to a prediction for the quantity a source
reports comes from a source named in the file. No torch (a traced prediction comes through `fallback`).

Every quantity a source reports is reserved memory (the caching allocator's pool, alone or under the CUDA context),
not the tensors alive at the step's peak: where the run can be replayed (`reserve`: its allocations from a traced
run at full depth, through the allocator's rules, harness/predict/caching_allocator.py), the prediction is that
reserve; elsewhere it is the allocated figure, and the row says why. Both are kept, with the error of each.

The traces and replays the rows need are recorded in published_traced.json (`bench estimate --published
--save-traces`), so that the site, built without torch, shows every row; tests/test_published.py fails when a
recorded trace is not what the code traces today.
"""

from __future__ import annotations

import json
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Callable

from harness.config.case import config_hash
from harness.config.fields import ConfigError
from harness.config.groups import BenchConfig
from harness.predict import estimate

PUBLISHED_FILE = Path(__file__).with_name("published.json")
TRACED_FILE = Path(__file__).with_name("published_traced.json")
# what each quantity a source reports is predicted by: the step's figure (the timeline's largest moment, allocated)
# and the run whose allocations the caching allocator's rules replay for its reserve (the file's `quantities` say
# how each is measured)
PREDICTED_BY = {
    "peak_reserved": ("peak_step_bytes", "step"),
    "process_training": ("peak_step_bytes", "step"),
    "process_inference": ("peak_infer_bytes", "fwd_infer"),
}
# (config, device type, phase) -> {reserved_peak_bytes, allocated_peak_bytes, formula}: a replayed reserve
# (harness/measure/traced.py, replayed_reserve)
Reserve = Callable[[BenchConfig, str, str], dict]
NO_REPLAY = {"reserved_peak_bytes": None, "formula": "no replay asked (--no-trace)"}


@lru_cache(maxsize=1)
def published() -> dict:
    """The file, read once."""
    return json.loads(PUBLISHED_FILE.read_text())


def trace_key(cfg: BenchConfig, device_type: str) -> str:
    return f"{config_hash(cfg.to_dict())}:{device_type}"


def replay_key(cfg: BenchConfig, device_type: str, phase: str) -> str:
    return f"replay:{phase}:{trace_key(cfg, device_type)}"


@lru_cache(maxsize=1)
def recorded_traces() -> dict:
    """The recorded traces and replays, read once ({} before any was recorded)."""
    return json.loads(TRACED_FILE.read_text()) if TRACED_FILE.exists() else {}


def recorded(cfg: BenchConfig, device_type: str) -> dict:
    """A Fallback that reads the recorded traces (no torch)."""
    missing = {"activations_bytes": None, "formula": "no recorded trace (bench estimate --published traces it)"}
    return recorded_traces().get(trace_key(cfg, device_type), missing)


def recorded_replay(cfg: BenchConfig, device_type: str, phase: str) -> dict:
    """A Reserve that reads the recorded replays (no torch)."""
    missing = {"reserved_peak_bytes": None, "formula": "no recorded replay (bench estimate --published replays it)"}
    return recorded_traces().get(replay_key(cfg, device_type, phase), missing)


def recording(run: Callable[..., dict], key: Callable[..., str], into: dict) -> Callable[..., dict]:
    """`run` (a Fallback or a Reserve), keeping each answer in `into` by `key` of its arguments (what --save-traces
    writes)."""

    def recorded_run(*args) -> dict:
        into[key(*args)] = out = run(*args)
        return out

    return recorded_run


def row_prediction(row: dict, fallback: estimate.Fallback | None, reserve: Reserve | None = None) -> dict:
    """One row: {id, published_bytes, predicted_bytes, error (predicted / published - 1), peak_moment, reason}.
    predicted_bytes is the replayed reserve where `reserve` gives one (the quantities are reserved memory), else the
    step's allocated figure; both are kept (allocated_bytes, allocated_error, reserved_bytes), with `replay`, what
    the reserve comes from or why there is none. A row that cannot be expressed, or has no figure, has
    predicted_bytes None and the reason."""
    from harness.config.compose import make_case

    out = {"id": row["id"], "published_bytes": int(row["published"] * row["unit_bytes"]), "peak_moment": None}
    try:
        cfg = make_case(row["overrides"]).config
    except ConfigError as exc:
        refused = str(exc).split("; allowed:")[0]  # the refusal, without the list of what is allowed
        needs = f"; needs {row['needs']}" if row.get("needs") else ""
        return {**out, "predicted_bytes": None, "error": None, "reason": f"cannot be expressed yet: {refused}{needs}"}
    key, phase = PREDICTED_BY[row["quantity"]]
    predicted = estimate.step(cfg, "cuda", fallback)
    if predicted[key] is None:
        reason = f"no figure: {predicted['formulas']['activations_bytes']}"
        return {**out, "predicted_bytes": None, "error": None, "reason": reason}
    adds = sum(published()["overheads"][name]["bytes"] for name in row["adds"])
    replay = reserve(cfg, "cuda", phase) if reserve else NO_REPLAY
    allocated = predicted[key] + adds
    reserved = replay["reserved_peak_bytes"]
    value = allocated if reserved is None else reserved + adds
    return {
        **out,
        "predicted_bytes": value,
        "error": value / out["published_bytes"] - 1,
        "allocated_bytes": allocated,
        "allocated_error": allocated / out["published_bytes"] - 1,
        "reserved_bytes": reserved,
        "replay": replay,
        "peak_moment": predicted["peak_moment"] if key == "peak_step_bytes" else "inference",
        "reason": None,
        "source": predicted["activations_source"],
    }


def median_and_largest(errors: list) -> tuple:
    """(median, largest) of the absolute errors that exist, (None, None) where none does."""
    errors = [abs(e) for e in errors if e is not None]
    return (statistics.median(errors), max(errors)) if errors else (None, None)


def evaluate(fallback: estimate.Fallback | None = None, reserve: Reserve | None = None) -> dict:
    """Every row predicted, and over the rows with a prediction: n, the median and the largest |error|, and the
    median and largest of the allocated figure's alone."""
    rows = [{**row, **row_prediction(row, fallback, reserve)} for row in published()["rows"]]
    median, largest = median_and_largest([r["error"] for r in rows])
    allocated_median, allocated_largest = median_and_largest([r.get("allocated_error") for r in rows])
    return {
        "rows": rows,
        "n_expressed": sum(r["error"] is not None for r in rows),
        "n_replayed": sum(r.get("reserved_bytes") is not None for r in rows),
        "median_abs_error": median,
        "max_abs_error": largest,
        "allocated_median_abs_error": allocated_median,
        "allocated_max_abs_error": allocated_largest,
        "quantities": published()["quantities"],
        "overheads": published()["overheads"],
    }
