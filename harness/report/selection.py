"""Reading the grouped frame (harness/report/frame.py) for the judges: selecting rows by structured columns,
and pairing rows that are the same configuration but for one axis. pandas only."""

from __future__ import annotations

import pandas as pd

from harness.report.frame import quiet_fragmentation

# --- reading the grouped frame -------------------------------------------------------------------------------

# Rows paired as the same configuration but for one axis are measured on one hardware, torch build and environment.
PAIRED_WITHIN = ["hardware", "torch", "environment"]

# The columns that say which configuration a row is (what harness.report.frame.config_label writes as text),
# so that "the same configuration but for the depth / the precision" is a key of columns, not of label text.
CONFIGURATION = (
    "model",
    "preset",
    "attn",
    "depth",
    "width",
    "activation",
    "residual",
    "norm",
    "precision",
    "batch_size",
    "seq_len",
    "memory_budget_gib",
    "parallel",
    "world_size",
    "reshard",
)


# What can tell two judged configurations apart where their labels agree (harness/report/frame.py columns).
TELLS_APART = (
    "hardware_label",
    "torch",
    "environment",
    *CONFIGURATION,
    "method",
    "lora_r",
    "checkpointing",
    "segments",
)


def told_apart(labels: list[str], rows: list[dict]) -> list[str]:
    """The parts' labels made distinct: where parts share a label, the columns whose values tell their rows apart
    are added ("(width 128)", "(hardware_label NVIDIA L4)"); the records' hashes where no column does."""
    out = list(labels)
    for label in dict.fromkeys(labels):
        same = [i for i, text in enumerate(labels) if text == label]
        if len(same) < 2:
            continue
        differing = [c for c in TELLS_APART if len({_plain(rows[i].get(c)) for i in same}) > 1]
        for i in same:
            told = ", ".join(f"{c} {_plain(rows[i].get(c))}" for c in differing)
            out[i] = f"{label} ({told or 'config ' + str(rows[i].get('config_hash'))})"
    return out


def _plain(value):
    """One key for a missing value (NaN, None) and plain numbers (3.0 as 3) in labels."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def same_configuration_but(rows: pd.DataFrame, *varying: str) -> list[pd.DataFrame]:
    """The rows split by hardware and configuration, the columns in `varying` left free (in frame order)."""
    if rows.empty:
        return []
    cols = ["hardware", *(c for c in CONFIGURATION if c not in varying)]
    values = rows[cols].astype(object)
    values = values.where(values.notna(), None)  # NaN != NaN: a missing value is one key, not many
    index: dict[tuple, list] = {}
    for position, key in zip(rows.index, values.itertuples(index=False, name=None)):
        index.setdefault(key, []).append(position)
    return [rows.loc[positions] for positions in index.values()]


def rows_in(groups: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of `groups` that are in any of `parts` (by index), in the frame's order: the rows a judge read,
    for its Verdict."""
    index = set().union(*(set(p.index) for p in parts)) if parts else set()
    return groups[groups.index.isin(index)]


def keyed(rows: pd.DataFrame, key: list[str], wanted: set) -> pd.Series:
    """A mask of the rows whose values in the `key` columns are one of the `wanted` tuples."""
    return pd.Series([k in wanted for k in rows[key].itertuples(index=False, name=None)], index=rows.index, dtype=bool)


def family_rows(rows: pd.DataFrame, family: str) -> pd.DataFrame:
    """The rows of one model family (harness/families/: the `model` column holds its name). The claims and plots
    that read one family's sweep (the mlp's depths, the llama presets' sequence lengths and kernels) select it
    here, by name, once."""
    return rows[rows["model"] == family]


def select(groups: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    out = groups
    for col, allowed in (where or {}).items():
        out = out[out[col].isin(allowed)]
    return out


def measured_rows(groups: pd.DataFrame, multi_rank: bool = False) -> pd.DataFrame:
    """Groups with at least one ok repeat; single-process ones unless `multi_rank` (the claims about one device
    are judged on one device: a DDP or FSDP2 case is a configuration of its own)."""
    rows = groups[groups["n"] > 0]
    if multi_rank or "parallel" not in rows:
        return rows
    return rows[rows["parallel"].fillna("none") == "none"]


def depth_families(groups: pd.DataFrame, min_depths: int) -> list[pd.DataFrame]:
    """mlp configurations (checkpointing off, activations measured) at `min_depths` depths or more, one frame
    each: what claim 7's judge fits a line through."""
    rows = family_rows(measured_rows(groups), "mlp")
    rows = rows[~rows["checkpointing"].astype(bool) & rows["depth"].notna() & rows["activations_bytes_median"].notna()]
    return [g for g in same_configuration_but(rows, "depth") if g["depth"].nunique() >= min_depths]


def hardware_of(rows: pd.DataFrame) -> str:
    return ", ".join(sorted(set(rows["hardware_label"]))) if len(rows) else "—"


def checkpointing_pairs(groups: pd.DataFrame) -> pd.DataFrame:
    """Rows with checkpointing on matched to the same configuration and method with it off (also drawn by
    harness.report.plots)."""
    ok = measured_rows(groups)
    key = [*PAIRED_WITHIN, "hash_without_checkpointing", "config", "method"]
    with quiet_fragmentation():
        off = ok[~ok["checkpointing"].astype(bool)].set_index(key)
        on = ok[ok["checkpointing"].astype(bool)].set_index(key)
        joined = off.join(on, suffixes=("_off", "_on"), how="inner").reset_index().copy()
    if joined.empty:
        return joined
    joined = joined.assign(
        time_added_pct=(joined["step_s_median_on"] / joined["step_s_median_off"] - 1) * 100,
        peak_saved_pct=(1 - joined["peak_step_bytes_median_on"] / joined["peak_step_bytes_median_off"]) * 100,
        activations_saved_pct=(1 - joined["activations_bytes_median_on"] / joined["activations_bytes_median_off"])
        * 100,
    )
    return joined.sort_values(key).reset_index(drop=True)


def checkpointing_rows(groups: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The grouped rows of each side of `checkpointing_pairs` (off and on): what claim 6's judge read."""
    key = [*PAIRED_WITHIN, "measured_hash"]
    wanted = {
        tuple(p[c] for c in PAIRED_WITHIN) + (p[f"measured_hash_{side}"],)
        for _, p in pairs.iterrows()
        for side in ("off", "on")
    }
    return groups[keyed(groups, key, wanted)]


# a family of the attention judge: the configuration but for the sequence length and the attention kernel
ATTENTION_FAMILY = ["hardware", "preset", "precision", "method", "batch_size", "checkpointing"]


def attention_cells(groups: pd.DataFrame, min_lengths: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The attention claim's selection (its one home; the claim's page lists what it returns, through the
    Verdict): llama presets measured in one process with their activations, tabled by family and sequence length
    against the kernel, keeping the cells measured with both eager and SDPA in the families that have such cells at
    `min_lengths` lengths or more. Returns (the grouped rows of those cells, the table, each family's lengths)."""
    rows = family_rows(measured_rows(groups), "llama")
    rows = rows[rows["activations_bytes_median"].notna()]
    both = rows.pivot_table(
        index=[*ATTENTION_FAMILY, "seq_len"],
        columns="attn",
        values=["activations_bytes_median", "predicted_activations_bytes_median"],
        aggfunc="median",
    )
    kernels = [("activations_bytes_median", "eager"), ("activations_bytes_median", "sdpa")]
    if both.empty or any(k not in both for k in kernels):
        return rows.iloc[0:0], both, pd.Series(dtype=int)
    both = both.dropna(subset=kernels)
    lengths = both.groupby(level=list(range(len(ATTENTION_FAMILY)))).size()
    lengths = lengths[lengths >= min_lengths]
    families = set(lengths.index)
    cells = {cell for cell in both.index if cell[:-1] in families}
    return rows[keyed(rows, [*ATTENTION_FAMILY, "seq_len"], cells)], both, lengths


def within(value: float, bounds: list[float]) -> bool:
    lo, hi = bounds
    return bool(lo <= value <= hi)


# --- the judges ----------------------------------------------------------------------------------------------
