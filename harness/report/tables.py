"""`bench table`: every submitted record as one pandas row, repeats grouped, written per schema major version.

A group is one configuration (config_hash) on one piece of hardware with one torch build and one software
environment (the lock's, or its stated differences from the lock): those are repeats, and only repeats are
summarised together (median, min, max, n; the mean without the fastest and slowest once there are five or
more). CSV keeps base units (seconds, bytes) at full precision for machines; Markdown
converts for articles (ms, MiB or GiB) and says so in every header.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

# The grouped table is wide (a handful of statistics per metric); pandas' fragmentation hint about it is
# about speed on tables of thousands of columns, not correctness.
warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)

from harness.records.schema import canonical_json, config_hash
from harness.spec.units import table_scale
from harness.records.folder import RECORDS, Stored, hardware_key, hardware_label

# (column, where it is in a record, unit) — the unit is also in the column name.
METRICS: list[tuple[str, str]] = [
    ("fwd_infer_s", "metrics.time.fwd_infer.median_s"),
    ("fwd_train_s", "metrics.time.fwd_train.median_s"),
    ("fwd_bwd_s", "metrics.time.fwd_bwd.median_s"),
    ("step_s", "metrics.time.step.median_s"),
    ("compute_ratio", "metrics.compute_ratio"),
    ("compute_ratio_ci95_lo", "metrics.compute_ratio_ci95.0"),
    ("compute_ratio_ci95_hi", "metrics.compute_ratio_ci95.1"),
    ("backward_to_forward_ratio", "metrics.backward_to_forward_ratio"),
    ("step_to_infer_ratio", "metrics.step_to_infer_ratio"),
    ("flop_ratio", "metrics.flop_ratio"),
    ("step_samples_per_s", "metrics.throughput.step_samples_per_s"),
    ("step_tokens_per_s", "metrics.throughput.step_tokens_per_s"),
    ("infer_tokens_per_s", "metrics.throughput.infer_tokens_per_s"),
    ("params_bytes", "metrics.memory.params_bytes"),
    ("buffers_bytes", "metrics.memory.buffers_bytes"),
    ("grads_bytes", "metrics.memory.grads_bytes"),
    ("optimizer_bytes", "metrics.memory.optimizer_bytes"),
    ("activations_bytes", "metrics.memory.activations_bytes"),
    ("temp_bytes", "metrics.memory.temp_bytes"),
    ("peak_step_bytes", "metrics.memory.peak_step_bytes"),
    ("peak_infer_bytes", "metrics.memory.peak_infer_bytes"),
    ("train_to_infer_memory_ratio", "metrics.memory.train_to_infer_memory_ratio"),
    ("torch_max_allocated_bytes", "metrics.memory.torch_max_allocated_bytes"),
    ("nvml_process_bytes", "metrics.memory.nvml_process_bytes"),
    ("predicted_params_bytes", "predicted.memory.params_bytes"),
    ("predicted_grads_bytes", "predicted.memory.grads_bytes"),
    ("predicted_optimizer_bytes", "predicted.memory.optimizer_bytes"),
    ("predicted_activations_bytes", "predicted.memory.activations_bytes"),
    ("predicted_flop_ratio", "predicted.flop_ratio"),
    ("first_to_last_layer_grad_norm_ratio", "metrics.gradients.first_to_last_layer_grad_norm_ratio"),
    ("fd_max_rel_error", "metrics.gradients.fd_max_rel_error"),
    ("fd_full_gradient_forward_passes", "metrics.gradients.fd_full_gradient_forward_passes"),
    ("fd_full_gradient_projected_s", "metrics.gradients.fd_full_gradient_projected_s"),
    ("backprop_fwd_bwd_float64_s", "metrics.gradients.backprop_fwd_bwd_float64_s"),
]
METRIC_NAMES = [name for name, _ in METRICS]
GROUP_KEYS = ["schema_major", "hardware", "config_hash", "torch", "environment"]


def _dig(obj, dotted: str):
    for part in dotted.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)] if int(part) < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def config_label(config: dict) -> str:
    """Short, stable name of a configuration for tables and plot axes."""
    model = config["model"]
    if model["name"] == "llama":
        name = f"llama:{model.get('preset')}" + (f":{model['attn_implementation']}"
                                                 if model.get("attn_implementation") != "sdpa" else "")
    else:
        name = f"mlp:{model.get('depth')}x{model.get('width')}"
        if model.get("activation", "relu") != "relu":
            name += f":{model['activation']}"
        if model.get("residual"):
            name += "+res"
        if model.get("norm"):
            name += "+ln"
    label = f"{name} {config['precision']['name']} bs{config['workload']['batch_size']}x{config['workload']['seq_len']}"
    budget = (config.get("device") or {}).get("memory_budget_gib")
    return label + (f" budget {budget:g} GiB" if budget is not None else "")


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
    named = [f"{d.get('package')} {d['installed']}" if d.get("installed") else f"{d.get('package')} not installed"
             for d in diffs]
    if len(named) > ENV_LISTED:
        fingerprint = hashlib.sha256(canonical_json(diffs).encode()).hexdigest()[:8]
        named = [*named[:ENV_LISTED], f"{len(named) - ENV_LISTED} more [{fingerprint}]"]
    return "differs: " + ", ".join(named)


def record_row(stored: Stored, root: Path) -> dict:
    r = stored.record
    cfg, prov = r["config"], r["provenance"]
    row = {
        "schema_major": int(str(r["schema_version"]).split(".")[0]),
        "hardware": hardware_key(prov),
        "hardware_label": hardware_label(prov),
        "device_type": prov.get("device_type"),
        "config_hash": r["config_hash"],
        "torch": prov.get("torch"),
        "environment": environment_label(prov),
        "id": r["id"],
        "status": r["status"],
        "oom_phase": (r.get("error") or {}).get("phase") if r["status"] == "oom" else None,
        "config": config_label(cfg),
        "model": cfg["model"]["name"],
        "preset": cfg["model"].get("preset"),
        "depth": cfg["model"].get("depth"),
        "attn": cfg["model"].get("attn_implementation"),
        "activation": cfg["model"].get("activation"),
        "residual": bool(cfg["model"].get("residual")),
        "norm": bool(cfg["model"].get("norm")),
        "method": cfg["method"]["name"],
        "precision": cfg["precision"]["name"],
        "checkpointing": bool(cfg["checkpointing"]["enabled"]),
        "batch_size": cfg["workload"]["batch_size"],
        "seq_len": cfg["workload"]["seq_len"],
        "repeats_per_run": cfg["measure"]["repeats"],
        "harness_version": prov.get("harness_version"),
        "git_sha": prov.get("git_sha"),
        "git_dirty": bool(prov.get("git_dirty")),
        "checks_failed": len(r["flags"].get("checks_failed", [])),
        "predicted_disagrees": " ".join(r["flags"].get("predicted_disagrees", [])),
        "noisy": bool(r["flags"].get("noisy")),
        "utc_time": prov.get("utc_time"),
        # the same configuration but for one axis: how pairs (checkpointing off/on, AdamW/AdamW8bit) are matched
        "hash_without_checkpointing": config_hash({**cfg, "checkpointing": None}),
        "hash_without_method": config_hash({**cfg, "method": None}),
        "source": stored.path.relative_to(root).as_posix() if stored.path.is_relative_to(root) else str(stored.path),
    }
    for name, where in METRICS:
        value = _dig(r, where) if r["status"] == "ok" else None
        row[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return row


def records_frame(stored: list[Stored], root: Path) -> pd.DataFrame:
    frame = pd.DataFrame([record_row(s, root) for s in stored])
    if frame.empty:
        return frame
    return frame.sort_values(["schema_major", "hardware", "config", "method", "checkpointing", "utc_time", "id"],
                             kind="mergesort").reset_index(drop=True)


def trimmed_mean(values: pd.Series) -> float | None:
    """Mean without the single fastest and slowest value; only defined from five values up."""
    values = values.dropna().sort_values()
    if len(values) < 5:
        return None
    return float(values.iloc[1:-1].mean())


# Carried from a group's first record (the same for every repeat of one configuration).
GROUP_COPIED = ("hardware_label", "device_type", "config", "model", "preset", "depth", "attn", "activation",
                "residual", "norm", "method", "hash_without_checkpointing", "hash_without_method", "precision",
                "checkpointing", "batch_size", "seq_len", "repeats_per_run")
GROUP_COUNTS = ("n", "n_oom", "oom_phases", "status", "git_dirty_runs", "checks_failed_runs", "noisy_runs",
                "predicted_disagrees", "git_shas", "ids")
STATISTICS = ("median", "min", "max", "trimmed_mean")
GROUPED_COLUMNS = [*GROUP_KEYS, *GROUP_COPIED, *GROUP_COUNTS,
                   *(f"{name}_{stat}" for name in METRIC_NAMES for stat in STATISTICS)]


def memory_unit(values: pd.Series) -> tuple[int, str]:
    """MiB, or GiB once the largest value reaches 4 GiB: one rule for tables and plots."""
    values = values.dropna()
    return table_scale(values.max() if len(values) else 0)


def grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (schema major, hardware, configuration, torch build, environment) with statistics over ok
    repeats; an empty frame (an empty folder) gives an empty table with every column, so readers need no
    special case."""
    if frame.empty:
        return pd.DataFrame(columns=GROUPED_COLUMNS)
    out = []
    for key, group in frame.groupby(GROUP_KEYS, sort=True, dropna=False):
        ok = group[group["status"] == "ok"]
        first = group.iloc[0]
        row = dict(zip(GROUP_KEYS, key))
        for col in GROUP_COPIED:
            row[col] = first[col]
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
        for name in METRIC_NAMES:
            values = ok[name].dropna()
            row[f"{name}_median"] = float(values.median()) if len(values) else None
            row[f"{name}_min"] = float(values.min()) if len(values) else None
            row[f"{name}_max"] = float(values.max()) if len(values) else None
            row[f"{name}_trimmed_mean"] = trimmed_mean(values)
        out.append(row)
    result = pd.DataFrame(out, columns=GROUPED_COLUMNS)
    return result.sort_values(["schema_major", "hardware", "config", "method", "checkpointing"],
                              kind="mergesort").reset_index(drop=True)


# Markdown: (header without unit, metric, kind) — kind picks the conversion and the unit in the header.
MD_COLUMNS = [
    ("fwd_train", "fwd_train_s", "ms"),
    ("fwd+bwd", "fwd_bwd_s", "ms"),
    ("step", "step_s", "ms"),
    ("compute ratio", "compute_ratio", "x"),
    ("bwd/fwd", "backward_to_forward_ratio", "x"),
    ("FLOP ratio", "flop_ratio", "x"),
    ("predicted FLOP ratio", "predicted_flop_ratio", "x"),
    ("step throughput", "step_tokens_per_s", "tok/s"),
    ("peak train", "peak_step_bytes", "mem"),
    ("peak infer", "peak_infer_bytes", "mem"),
    ("train/infer memory", "train_to_infer_memory_ratio", "x"),
    ("activations", "activations_bytes", "mem"),
    ("predicted activations", "predicted_activations_bytes", "mem"),
]


def _number(value: float, kind: str, mem_unit: int) -> str:
    if kind == "ms":
        return f"{value * 1e3:.3g}" if value * 1e3 < 100 else f"{value * 1e3:.0f}"
    if kind == "mem":
        return f"{value / mem_unit:.3g}" if value / mem_unit < 1000 else f"{value / mem_unit:.0f}"
    if kind == "tok/s":
        return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"
    return f"{value:.2f}"


def _cell(row: pd.Series, metric: str, kind: str, mem_unit: int) -> str:
    med = row[f"{metric}_median"]
    if med is None or pd.isna(med):
        return "—"
    text = _number(med, kind, mem_unit)
    if row["n"] > 1:
        text += f" ({_number(row[f'{metric}_min'], kind, mem_unit)}–{_number(row[f'{metric}_max'], kind, mem_unit)})"
    tm = row[f"{metric}_trimmed_mean"]
    if tm is not None and not pd.isna(tm):
        text += f" tm {_number(tm, kind, mem_unit)}"
    return text


def markdown(groups: pd.DataFrame, major: int, source: str) -> str:
    lines = [f"# backprop-bench results, schema {major}.x", "",
             f"Generated by `bench table` from `{source}`. Each row: one configuration on one hardware; cells are the",
             "median over repeats, with (min–max) when n > 1 and `tm` the mean without the fastest and slowest",
             "when n ≥ 5. compute ratio = t(fwd+bwd)/t(fwd_train); — = not measured. Exact values in results.csv.", ""]
    for hardware, hw_groups in groups.groupby("hardware", sort=True):
        mem_unit, mem_name = memory_unit(hw_groups["peak_step_bytes_max"])
        label = hw_groups.iloc[0]["hardware_label"]
        torch_builds = ", ".join(sorted(set(hw_groups["torch"])))
        lines += [f"## {label}", "", f"`records/{hardware}/` · torch {torch_builds}", ""]
        headers = ["configuration", "method", "ckpt", "n"]
        for title, _, kind in MD_COLUMNS:
            unit = mem_name if kind == "mem" else kind
            headers.append(f"{title} ({unit})" if unit != "x" else f"{title} (×)")
        headers.append("notes")
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for _, row in hw_groups.iterrows():
            notes = []
            if row["status"] == "oom":
                cells = ["does not fit"] + [""] * (len(MD_COLUMNS) - 1)
                notes.append(f"out of memory on {label}" + (f" in {row['oom_phases']}" if row["oom_phases"] else ""))
            else:
                cells = [_cell(row, metric, kind, mem_unit) for _, metric, kind in MD_COLUMNS]
                if row["n_oom"]:
                    notes.append(f"{row['n_oom']} run(s) out of memory")
            if row["checks_failed_runs"]:
                notes.append(f"self-checks failed in {row['checks_failed_runs']} run(s)")
            if row["git_dirty_runs"]:
                notes.append(f"{row['git_dirty_runs']} run(s) from a modified tree")
            if row["predicted_disagrees"]:
                notes.append(f"outside the analytic model's tolerance: {row['predicted_disagrees']}")
            if row["noisy_runs"]:
                notes.append(f"noisy in {row['noisy_runs']} run(s)")
            if row["environment"] not in ("lock", "not recorded"):
                notes.append("software " + row["environment"].replace("differs:", "differs from requirements.lock:"))
            lines.append("| " + " | ".join([row["config"], row["method"], "on" if row["checkpointing"] else "off",
                                            str(row["n"] + row["n_oom"] if row["status"] == "oom" else row["n"]),
                                            *cells, "; ".join(notes)]) + " |")
        lines.append("")
    return "\n".join(lines)


def _replace_atomically(path: Path, text: str) -> None:
    """Generated files are replaced whole: readers see the old table or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_tables(stored: list[Stored], root: Path, out: Path) -> list[Path]:
    frame = records_frame(stored, root)
    written: list[Path] = []
    if frame.empty:
        return written
    groups = grouped(frame)
    for major, major_groups in groups.groupby("schema_major", sort=True):
        directory = out / f"v{major}"
        csv_path, md_path = directory / "results.csv", directory / "results.md"
        _replace_atomically(csv_path, major_groups.to_csv(index=False, lineterminator="\n"))
        _replace_atomically(md_path, markdown(major_groups, int(major), f"{RECORDS}/"))
        written += [csv_path, md_path]
    return written
