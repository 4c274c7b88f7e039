"""The judge of the scale-out claim (13): what one rank holds under FSDP2 against the same case in one process,
and what sharding costs in step time. pandas only."""

from __future__ import annotations

import pandas as pd

from harness.report.frame import quiet_fragmentation
from harness.report.selection import hardware_of, keyed, measured_rows, select, told_apart
from harness.report.verdict import Verdict

STATE = (("params_bytes", "parameters"), ("grads_bytes", "gradients"), ("optimizer_bytes", "optimizer state"))
# one configuration in one process and on N ranks: the same but for the parallel group
PAIRED_BY = ["hardware", "torch", "environment", "hash_without_parallel"]


def _paired(groups: pd.DataFrame, style: str, where: dict | None) -> pd.DataFrame:
    """Each multi-rank row of `style` beside the same configuration measured in one process (same hardware,
    torch build and environment)."""
    rows = select(measured_rows(groups, multi_rank=True), where)
    with quiet_fragmentation():
        single = rows[rows["parallel"] == "none"].set_index(PAIRED_BY)
        ranked = rows[rows["parallel"] == style].set_index(PAIRED_BY)
        return ranked.join(single, how="inner", suffixes=("", "_single")).reset_index()


def _read(groups: pd.DataFrame, *paired: pd.DataFrame) -> pd.DataFrame:
    """The grouped rows of the configurations paired: each in one process and on every number of ranks."""
    rows = measured_rows(groups, multi_rank=True)
    wanted = {key for pairs in paired for key in pairs[PAIRED_BY].itertuples(index=False, name=None)}
    return rows[keyed(rows, PAIRED_BY, wanted)]


def judge_sharding(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Holds for a configuration if each rank's parameters, gradients and optimizer state are at most 1/N of one
    process's, N the world size, within `tolerance` (FSDP2 pads each rank's shard to equal rows)."""
    j = claim["judge"]
    fsdp = _paired(groups, j["style"], j.get("where"))
    if fsdp.empty:
        return Verdict.not_measured(rows=_read(groups, fsdp))
    results, measured, predicted = [], [], []
    fsdp = fsdp.sort_values(["hardware", "config"])
    labels = told_apart([f"{r['config']} {r['method']}" for _, r in fsdp.iterrows()], fsdp.to_dict("records"))
    for label, (_, row) in zip(labels, fsdp.iterrows()):
        world = int(row["world_size"])
        shares = {col: row[f"{col}_median"] / row[f"{col}_median_single"] for col, _ in STATE}
        results.append((label, all(share <= (1 + j["tolerance"]) / world for share in shares.values())))
        cost = row["step_s_median"] / row["step_s_median_single"]
        measured.append(
            f"{label}: per rank "
            + ", ".join(f"{name} 1/{1 / shares[col]:.2f}" for col, name in STATE)
            + f" of one process; peak {row['peak_step_bytes_median'] / row['peak_step_bytes_median_single']:.2f}×,"
            f" step time {cost:.2f}×"
        )
        predicted.append(
            f"{label}: "
            + ", ".join(
                f"1/{row[f'predicted_{col}_median_single'] / row[f'predicted_{col}_median']:.2f}" for col, _ in STATE
            )
        )
    ddp = _paired(groups, "ddp", None)
    for _, row in ddp.sort_values(["hardware", "config"]).iterrows():
        measured.append(
            f"{row['config']} {row['method']} (DDP, a replica): parameters "
            f"{row['params_bytes_median'] / row['params_bytes_median_single']:.2f}×, step time "
            f"{row['step_s_median'] / row['step_s_median_single']:.2f}× one process"
        )
    return Verdict.of(
        results,
        "; ".join(measured),
        "per-rank shares by FSDP2's padding rule (harness/predict/sharded.py): " + "; ".join(predicted),
        hardware_of(fsdp),
        _read(groups, fsdp, ddp),
        "configurations",
    )
