"""The data frame every report shares: each submitted record as one pandas row, and repeats grouped.

A group is one configuration (what was measured: the config without how it was measured, `measured_hash`) on one
piece of hardware with one torch build and one software environment (the lock's, or its stated differences from
the lock): those are repeats, and only repeats are summarised together (median, min, max, n; the mean without the
fastest and slowest once there are five or more), whatever repeat count or warm-up each run used. Tables, plots,
claims and citations read these frames; the metric columns come from the record schema (harness/records/schema.py
METRICS), so a metric added there is in every report.

The noise gate is here, once: the timed figures of a noisy phase (results/README.md, "The noise gate"), and every
timed figure of a contended record (the machine busier than its cores while it ran), are left out of the frame
unless it was built with `include_noisy`; memory, FLOP and predicted figures are never gated. Each group counts the
runs it left figures of out.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from harness import families
from harness.config.groups import BenchConfig
from harness.config.rules import ADAPTER_METHODS
from harness.records.folder import hardware_key, hardware_label
from harness.records.record import Record
from harness.records.schema import METRICS, canonical_json, config_hash
from harness.records.signing import signing_in_use
from harness.units import table_scale

METRIC_NAMES = [metric.column for metric in METRICS]
# Who signed (harness/records/signing.py): a column only in a folder that names its signers.
SIGNED_BY, UNSIGNED = "signed_by", "unsigned"
# What makes rows repeats of each other.
GROUP_KEYS = ["schema_major", "hardware", "measured_hash", "torch", "environment"]
# How a case was measured, not what: runs that differ only here are repeats of one configuration.
HOW_MEASURED = ("measure", "suite", "output_dir")
# The noise gate, per phase: the figures each phase's timings feed. A phase flagged noisy (its cv above
# measure.noisy_cv) has them left out; the record's other figures (memory, FLOPs, predictions) stay.
FORWARD_RATIOS = ("compute_ratio", "compute_ratio_ci95_lo", "compute_ratio_ci95_hi", "backward_to_forward_ratio")
TIMED_BY_PHASE = {
    "fwd_infer": ("fwd_infer_s", "infer_tokens_per_s", "step_to_infer_ratio"),
    "fwd_train": ("fwd_train_s", *FORWARD_RATIOS),
    "fwd_bwd": ("fwd_bwd_s", *FORWARD_RATIOS),
    "step": ("step_s", "step_samples_per_s", "step_tokens_per_s", "step_to_infer_ratio"),
}
# A contended machine (busier than its cores) slowed every timing of the case, the gradient study's too.
TIMED = (
    *dict.fromkeys(m for figures in TIMED_BY_PHASE.values() for m in figures),
    "fd_full_gradient_projected_s",
    "backprop_fwd_bwd_float64_s",
)
NOISY, CONTENDED = "noisy", "contended"  # why (the `left_out` column: "" = nothing left out)


def left_out_reason(rec: Record) -> str:
    """Why the gate leaves figures of a record out: noisy when a phase's timings were flagged (flags.noisy),
    contended when the machine was busier than its cores while it ran (flags.contended; absent in older records:
    not contended); "" when neither."""
    reasons = [NOISY] * bool(rec.noisy) + [CONTENDED] * bool(rec.flags.get("contended") is True)
    return " ".join(reasons)


def left_out_figures(rec: Record) -> tuple[str, ...]:
    """The metric columns the gate leaves out of a record: every timed one when contended, else those of its
    noisy phases (results/README.md, "The noise gate")."""
    if rec.flags.get("contended") is True:
        return TIMED
    return tuple(m for m in TIMED if any(m in TIMED_BY_PHASE.get(phase, ()) for phase in rec.noisy))


def measured_config(rec: Record) -> dict:
    """What a record measured: its typed config (every field, so records from before a field was added match)
    without how it was measured (repeats, warm-up, timeouts, suite, output folder, which device index)."""
    data = {k: v for k, v in rec.config.to_dict().items() if k not in HOW_MEASURED}
    data["device"] = {"memory_budget_gib": data["device"]["memory_budget_gib"]}
    return data


def config_label(cfg: BenchConfig) -> str:
    """Short, stable name of a configuration for tables and plot axes: the model as its family names it
    (harness/families/), then precision, workload, memory budget and parallel style."""
    label = f"{families.of(cfg.model).label(cfg.model)} {cfg.precision.name} "
    label += f"bs{cfg.workload.batch_size}x{cfg.workload.seq_len}"
    label += " grads kept" if cfg.workload.zero_grad == "zeros" else ""
    budget = cfg.device.memory_budget_gib
    label += f" budget {budget:g} GiB" if budget is not None else ""
    parallel = cfg.parallel
    if parallel.name != "none":
        label += f" {parallel.name}×{parallel.nproc * parallel.nnodes}"
        label += "" if parallel.reshard_after_forward or parallel.name != "fsdp" else " no-reshard"
    return label


ENV_LISTED = 4  # differences named in an environment label; more are counted and fingerprinted


def environment_label(prov: dict) -> str:
    """The software stack as a grouping key: "lock" when every pinned package matched requirements.lock,
    else the differences ("differs: torch 2.11.0+cu130, peft not installed"), so runs from a cluster's
    PyTorch are never averaged with lock runs. Stable: the same differences give the same text."""
    env = prov.get("environment")
    if not isinstance(env, dict):
        return "not recorded"
    if env.get("matches_lock") is True:
        return "lock"
    diffs = env.get("differences")
    if env.get("matches_lock") is None or not isinstance(diffs, list):
        return "not compared with a lock"
    named = [
        f"{d.get('package')} {d['installed']}" if d.get("installed") else f"{d.get('package')} not installed"
        for d in diffs
    ]
    if len(named) > ENV_LISTED:
        fingerprint = hashlib.sha256(canonical_json(diffs).encode()).hexdigest()[:8]
        named = [*named[:ENV_LISTED], f"{len(named) - ENV_LISTED} more [{fingerprint}]"]
    return "differs: " + ", ".join(named)


def _model_columns(rec: Record) -> dict:
    """What the model is, one column per field the selections key on (a field another family lacks is None)."""
    model = rec.config.model

    def field(name: str):
        return getattr(model, name, None)

    return {
        "model": model.name,
        # the block the model is built from (the analytic model's comparisons); llama presets are llama blocks
        "model_type": rec.resolved.get("model_type") or {"llama": "llama"}.get(model.name),
        "preset": field("preset"),
        "depth": field("depth"),
        "width": field("width"),
        "attn": field("attn_implementation"),
        "activation": field("activation"),
        "residual": bool(field("residual")),
        "norm": bool(field("norm")),
    }


def _setup_columns(rec: Record) -> dict:
    """How it was trained and measured: method, precision, workload, budget, ranks."""
    cfg = rec.config
    return {
        "method": cfg.method.label(),  # a paged optimizer is its own method in every table, plot and verdict
        "precision": cfg.precision.name,
        "checkpointing": bool(cfg.checkpointing.enabled),
        "segments": cfg.checkpointing.segments,
        "batch_size": cfg.workload.batch_size,
        "seq_len": cfg.workload.seq_len,
        "lora_r": cfg.method.r if cfg.method.name in ADAPTER_METHODS else None,
        "memory_budget_gib": cfg.device.memory_budget_gib,
        # records from before the parallel group ran in one process (the typed default, "none")
        "parallel": cfg.parallel.name,
        "world_size": rec.resolved.get("world_size", 1),
        # as stored: a record from before the parallel group has no such field (None), which the typed default
        # (True) would turn into a key of its own in the selections' configuration columns
        "reshard": rec.get("config.parallel.reshard_after_forward"),
        "repeats_per_run": cfg.measure.repeats,
    }


def _pairing_columns(rec: Record) -> dict:
    """What was measured, and the same but for one axis: how pairs (checkpointing off/on, AdamW/AdamW8bit, one
    process against N ranks) are matched. Hashes of `measured_config`, so runs of one configuration with other
    repeat counts pair alike."""
    measured = measured_config(rec)
    return {
        "measured_hash": config_hash(measured),
        "hash_without_checkpointing": config_hash({**measured, "checkpointing": None}),
        "hash_without_method": config_hash({**measured, "method": None}),
        "hash_without_parallel": config_hash({**measured, "parallel": None}),
    }


def record_row(rec: Record, root: Path, include_noisy: bool = False) -> dict:
    """One record as one row: what it is (keys, labels, flags) and every metric of the schema, in base units; the
    figures the noise gate leaves out are empty (`left_out` says why, `left_out_figures` which), unless
    `include_noisy`."""
    prov = rec.provenance
    row = {
        "schema_major": rec.schema_major,
        "hardware": hardware_key(prov),
        "hardware_label": hardware_label(prov),
        "device_type": prov.get("device_type"),
        "config_hash": rec.config_hash,
        "torch": prov.get("torch"),
        "environment": environment_label(prov),
        "id": rec.id,
        "status": rec.status,
        "oom_phase": rec.oom_phase,
        "config": config_label(rec.config),
        **_model_columns(rec),
        **_setup_columns(rec),
        "harness_version": prov.get("harness_version"),
        "git_sha": prov.get("git_sha"),
        "git_dirty": bool(prov.get("git_dirty")),
        "checks_failed": len(rec.checks_failed),
        "predicted_disagrees": " ".join(rec.flags.get("predicted_disagrees", [])),
        "noisy": bool(rec.noisy),
        "contended": rec.flags.get("contended") is True,
        "left_out": "" if include_noisy else left_out_reason(rec),
        "left_out_figures": "" if include_noisy else " ".join(left_out_figures(rec)),
        "utc_time": prov.get("utc_time"),
        **_pairing_columns(rec),
        "source": rec.source(root),
    }
    gated = set(row["left_out_figures"].split())
    for metric in METRICS:
        value = rec.get(metric.path) if rec.ok and metric.column not in gated else None
        row[metric.column] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return row


def records_frame(records: list[Record], root: Path, include_noisy: bool = False) -> pd.DataFrame:
    """Every record as a row, in one order on every machine (generated files must not depend on the folder's).
    In a folder that names its signers, `signed_by` says who signed each ("unsigned" for nobody). Noisy and
    contended records are rows like any other, their gated figures empty unless `include_noisy`."""
    signed = signing_in_use(root)
    frame = pd.DataFrame(
        [
            {**record_row(r, root, include_noisy), **({SIGNED_BY: r.signer or UNSIGNED} if signed else {})}
            for r in records
        ]
    )
    if frame.empty:
        return frame
    return frame.sort_values(
        ["schema_major", "hardware", "config", "method", "checkpointing", "utc_time", "id"], kind="mergesort"
    ).reset_index(drop=True)


def trimmed_mean(values: np.ndarray) -> float | None:
    """Mean without the single fastest and slowest value; only defined from five values up."""
    values = np.sort(values[~np.isnan(values)])
    return float(values[1:-1].mean()) if len(values) >= 5 else None


# Carried from a group's first record (the same for every repeat of one configuration).
GROUP_COPIED = (
    "hardware_label",
    "device_type",
    "config",
    "model",
    "model_type",
    "preset",
    "depth",
    "attn",
    "activation",
    "residual",
    "norm",
    "method",
    "hash_without_checkpointing",
    "hash_without_method",
    "precision",
    "checkpointing",
    "segments",
    "batch_size",
    "seq_len",
    "repeats_per_run",
    "width",
    "lora_r",
    "memory_budget_gib",
    "parallel",
    "world_size",
    "reshard",
    "hash_without_parallel",
)
GROUP_COUNTS = (
    "config_hash",  # the records' own hashes (space-separated): one per repeat count or schema they were made with
    "n",
    "n_oom",
    "oom_phases",
    "status",
    "git_dirty_runs",
    "checks_failed_runs",
    "noisy_runs",
    "predicted_disagrees",
    "git_shas",
    "ids",
    "left_out_runs",
    "left_out_ids",
)
STATISTICS = ("median", "min", "max", "trimmed_mean")
STATISTIC_COLUMNS = [f"{name}_{stat}" for name in METRIC_NAMES for stat in STATISTICS]
GROUPED_COLUMNS = [*GROUP_KEYS, *GROUP_COPIED, *GROUP_COUNTS, *STATISTIC_COLUMNS]


def memory_unit(values: pd.Series) -> tuple[int, str]:
    """MiB, or GiB once the largest value reaches 4 GiB: one rule for tables and plots."""
    values = values.dropna()
    return table_scale(values.max() if len(values) else 0)


def grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (schema major, hardware, configuration, torch build, environment) with statistics over its ok
    repeats, each figure over the runs the noise gate kept it of (records_frame); `left_out_runs` and
    `left_out_ids` count the runs some figure was left out of. An empty frame (an empty folder) gives an empty
    table with every column, so readers need no special case."""
    if frame.empty:
        return pd.DataFrame(columns=GROUPED_COLUMNS)
    out = []
    for key, group in frame.groupby(GROUP_KEYS, sort=True, dropna=False):
        row = {**dict(zip(GROUP_KEYS, key)), **_counts(group)}
        gated = group[group["left_out"] != ""]
        row["left_out_runs"] = len(gated)
        row["left_out_ids"] = " ".join(gated["id"])
        row.update(_statistics(group[group["status"] == "ok"]))
        out.append(row)
    result = pd.DataFrame(out, columns=GROUPED_COLUMNS + ([SIGNED_BY] if SIGNED_BY in frame else []))
    # statistics are numbers, NaN where no run measured (or kept) one: a column the gate emptied stays float
    result = result.astype(dict.fromkeys(STATISTIC_COLUMNS, float)).copy()  # one block per dtype again
    return result.sort_values(
        ["schema_major", "hardware", "config", "method", "checkpointing"], kind="mergesort"
    ).reset_index(drop=True)


def _statistics(ok: pd.DataFrame) -> dict:
    """Median, min, max and trimmed mean of every metric over the ok runs (None where none measured it); numpy
    on the group's block of values, not a pandas call per metric: the folder's hundreds of groups stay fast."""
    block = ok[METRIC_NAMES].to_numpy(dtype=float, na_value=np.nan)
    row = {}
    for i, name in enumerate(METRIC_NAMES):
        values = np.sort(block[:, i][~np.isnan(block[:, i])])
        some = len(values) > 0
        row[f"{name}_median"] = float(np.median(values)) if some else None
        row[f"{name}_min"] = float(values[0]) if some else None
        row[f"{name}_max"] = float(values[-1]) if some else None
        row[f"{name}_trimmed_mean"] = trimmed_mean(values)
    return row


def _counts(group: pd.DataFrame) -> dict:
    """What one group's kept runs are, beside their statistics: the configuration (its first record's), how many
    ran, ran out of memory, came from a modified tree, failed checks or were noisy, and who they are."""
    ok = group[group["status"] == "ok"]
    first = group.iloc[0]
    row = {col: first[col] for col in GROUP_COPIED}
    row["config_hash"] = " ".join(sorted(set(group["config_hash"])))
    row["n"] = len(ok)
    row["n_oom"] = int((group["status"] == "oom").sum())
    row["oom_phases"] = " ".join(sorted({p for p in group["oom_phase"].dropna()}))
    row["status"] = "ok" if row["n_oom"] == 0 else ("oom" if len(ok) == 0 else "ok+oom")
    row["git_dirty_runs"] = int(group["git_dirty"].sum())
    row["checks_failed_runs"] = int((group["checks_failed"] > 0).sum())
    row["noisy_runs"] = int(group["noisy"].sum())
    row["predicted_disagrees"] = " ".join(sorted({q for v in ok["predicted_disagrees"] for q in v.split()}))
    row["git_shas"] = " ".join(sorted(set(group["git_sha"].dropna())))
    row["ids"] = " ".join(group["id"])
    if SIGNED_BY in group:
        row[SIGNED_BY] = " ".join(sorted(set(group[SIGNED_BY])))
    return row


@contextlib.contextmanager
def quiet_fragmentation() -> Iterator[None]:
    """Around joins and index changes of the grouped frame: it is wide (four statistics per metric), and pandas
    then warns that the frame is "highly fragmented" — a hint about speed on frames of thousands of columns,
    not about correctness, and noise on a hundred rows. Scoped to the operation, so other pandas code in the
    process still gets the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)
        yield
