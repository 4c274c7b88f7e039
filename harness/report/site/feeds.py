"""Which configurations (rows of the grouped frame) feed each claim's verdict, for the claim's page.

The judges (harness/report/judges*.py) return a Verdict, not the rows they read. These selections take the same
`judge:` entry of suites/claims.yaml and the same selection helpers (harness/report/selection.py), and pick the
rows the judge can read; tests/test_site.py holds them to it: judging only the rows selected here gives the
verdict and figures judging the whole folder gives. A judge kind missing here shows every measured row, said so.
"""

from __future__ import annotations

import pandas as pd

from harness.report.judges import ATTENTION_FAMILY
from harness.report.selection import (
    checkpointing_pairs,
    depth_families,
    measured_rows,
    same_configuration_but,
    select,
)

# The metric a claim's table shows beside each configuration (its predicted_ twin where the analytic model has one).
KIND_METRICS = {
    "checkpointing": ["activations_bytes", "step_s"],
    "linear_in_depth": ["activations_bytes"],
    "attention": ["activations_bytes"],
    "precision": ["peak_step_bytes"],
    "finite_differences": ["fd_max_rel_error"],
    "gradient_norms": ["first_to_last_layer_grad_norm_ratio"],
    "adam_7b": ["optimizer_bytes"],
    "llama8b_lora": ["peak_infer_bytes", "peak_step_bytes"],
    "sharding": ["params_bytes", "optimizer_bytes", "step_s"],
}
# Analytic claims: the verdict comes from the model's shapes, no configuration feeds it.
ANALYTIC = {"lora_405b", "not_measured"}
# The plots of `bench plot` that show a claim, by judge kind (or by the metric a range/pair judge reads).
PLOTS = {
    "compute_ratio": ["compute_ratio"],
    "train_to_infer_memory_ratio": ["memory_by_category"],
    "optimizer_bytes": ["memory_by_category", "predicted_vs_measured"],
    "checkpointing": ["checkpointing_tradeoff"],
    "linear_in_depth": ["activations_vs_depth"],
    "attention": ["activations_vs_seq_len"],
    "precision": ["memory_by_category"],
    "adam_7b": ["predicted_vs_measured"],
    "llama8b_lora": ["memory_by_category"],
    "sharding": ["memory_by_category"],
}


def metrics_of(judge: dict) -> list[str]:
    return KIND_METRICS.get(judge["kind"]) or ([judge["metric"]] if "metric" in judge else [])


def plots_of(judge: dict) -> list[str]:
    return PLOTS.get(judge["kind"]) or PLOTS.get(judge.get("metric", ""), [])


def _union(groups: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of `groups` that are in any of `parts` (by index), in the frame's order."""
    index = set().union(*(set(p.index) for p in parts)) if parts else set()
    return groups[groups.index.isin(index)]


def _keyed(rows: pd.DataFrame, key: list[str], wanted: set) -> pd.Series:
    """Rows whose values in the `key` columns are one of the `wanted` tuples."""
    return pd.Series([k in wanted for k in rows[key].itertuples(index=False, name=None)], index=rows.index, dtype=bool)


def _range(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    base = select(measured_rows(groups), j.get("where"))
    parts = [select(base, s["where"]) for s in j["subsets"]]
    if "flop_ratio_where" in j:
        parts.append(select(base, j["flop_ratio_where"]))
    rows = _union(groups, parts)
    return rows[rows[f"{j['metric']}_median"].notna() | rows["predicted_flop_ratio_median"].notna()]


def _pair_ratio(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    ok = select(measured_rows(groups), j.get("where"))
    key = ["hardware", "torch", "environment", "hash_without_method", "config", "checkpointing"]
    keys = [
        set(ok[ok["method"] == j[side]][key].itertuples(index=False, name=None))
        for side in ("numerator", "denominator")
    ]
    return ok[ok["method"].isin([j["numerator"], j["denominator"]]) & _keyed(ok, key, keys[0] & keys[1])]


def _checkpointing(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    pairs = checkpointing_pairs(groups)
    if pairs.empty:
        return groups.iloc[0:0]
    pairs = pairs[pairs["depth_off"].fillna(0) >= j["min_depth"]]
    key = ["hardware", "torch", "environment", "config_hash"]
    wanted = {
        (p["hardware"], p["torch"], p["environment"], p[f"config_hash_{side}"])
        for _, p in pairs.iterrows()
        for side in ("off", "on")
    }
    return groups[_keyed(groups, key, wanted)]


def _linear_in_depth(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    return _union(groups, depth_families(groups, j["min_depths"]))


def _attention(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    """Every llama family measured with both kernels at enough lengths (the judge reads the one with the most)."""
    rows = measured_rows(groups)
    rows = rows[(rows["model"] == "llama") & rows["activations_bytes_median"].notna()]
    cells = rows.groupby([*ATTENTION_FAMILY, "seq_len"], dropna=False)["attn"].nunique()
    both = cells[cells >= 2].reset_index()
    lengths = both.groupby(ATTENTION_FAMILY, dropna=False)["seq_len"].nunique()
    families = set(lengths[lengths >= j["min_lengths"]].index)
    cells_kept = {
        k for k in both[[*ATTENTION_FAMILY, "seq_len"]].itertuples(index=False, name=None) if k[:-1] in families
    }
    return rows[_keyed(rows, [*ATTENTION_FAMILY, "seq_len"], cells_kept)]


def _precision(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    ok = select(measured_rows(groups), j["where"])
    families = [
        g
        for g in same_configuration_but(ok, "precision")
        if (g["precision"] == j["reference"]).any() and (g["precision"] != j["reference"]).any()
    ]
    return _union(groups, families)


def _not_null(column: str):
    def pick(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
        rows = measured_rows(groups)
        return rows[rows[column].notna()]

    return pick


def _adam_7b(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    rows = measured_rows(groups)
    rows = rows[(rows["method"] == "full_adamw") & (rows["precision"] == "fp32")]
    return rows[rows["optimizer_bytes_median"].notna() & rows["predicted_optimizer_bytes_median"].notna()]


def _llama8b_lora(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    rows = groups[groups["preset"] == j["preset"]]
    measured = rows[
        (rows["n"] > 0)
        & (rows["method"] == "lora")
        & (rows["batch_size"] == j["batch_size"])
        & (rows["precision"] == j["precision"])
        & (rows["lora_r"] == j["r"])
        & ~rows["checkpointing"].astype(bool)
    ]
    return measured if len(measured) else rows[rows["n_oom"] > 0]


def _sharding(j: dict, groups: pd.DataFrame) -> pd.DataFrame:
    """Multi-rank rows with their one-process twin, and the twins (as harness/report/judges_scale.py pairs them)."""
    rows = measured_rows(groups, multi_rank=True)
    key = ["hardware", "torch", "environment", "hash_without_parallel"]
    single = rows[rows["parallel"] == "none"]
    multi = rows[rows["parallel"] != "none"]
    paired = set(single[key].itertuples(index=False, name=None)) & set(multi[key].itertuples(index=False, name=None))
    return rows[_keyed(rows, key, paired)]


SELECTIONS = {
    "range": _range,
    "pair_ratio": _pair_ratio,
    "checkpointing": _checkpointing,
    "linear_in_depth": _linear_in_depth,
    "attention": _attention,
    "precision": _precision,
    "finite_differences": _not_null("fd_max_rel_error_median"),
    "gradient_norms": _not_null("first_to_last_layer_grad_norm_ratio_median"),
    "adam_7b": _adam_7b,
    "llama8b_lora": _llama8b_lora,
    "sharding": _sharding,
}


def feeding_rows(claim: dict, groups: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the grouped rows that feed the claim's verdict, a note on how they were chosen)."""
    kind = claim["judge"]["kind"]
    if groups.empty or kind in ANALYTIC:
        return groups.iloc[0:0], "analytic: computed from the model's shapes, no measured configuration feeds it"
    if kind not in SELECTIONS:
        return measured_rows(groups), f"every measured configuration (the judge {kind!r} is not mapped here)"
    return SELECTIONS[kind](claim["judge"], groups), "the configurations the judge reads"
