"""Figures of the analytic model against the measurement: predicted vs measured per quantity, and activations
against depth and sequence length with the predicted figures as markers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.figure import CKPT_STYLE, add_caption, save  # noqa: E402
from harness.report.frame import memory_unit  # noqa: E402
from harness.report.selection import family_rows  # noqa: E402

PREDICTED_QUANTITIES = [
    ("params_bytes", "parameters", "#4c72b0"),
    ("grads_bytes", "gradients", "#dd8452"),
    ("optimizer_bytes", "optimizer state", "#55a868"),
    ("activations_bytes", "activations", "#c44e52"),
]


def plot_predicted_vs_measured(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    from harness.predict.analytic import TOLERANCE

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    ok = groups[groups["n"] > 0]
    values = []
    for key, label, color in PREDICTED_QUANTITIES:
        pairs = ok[[f"predicted_{key}_median", f"{key}_median"]].dropna()
        pairs = pairs[(pairs > 0).all(axis=1)]
        ax1.plot(
            pairs.iloc[:, 0],
            pairs.iloc[:, 1],
            lw=0,
            marker="o",
            ms=5,
            color=color,
            alpha=0.8,
            label=f"{label} (±{TOLERANCE[key]:.0%})",
        )
        values += list(pairs.values.ravel())
    if values:
        lo, hi = min(values) / 1.5, max(values) * 1.5
        ax1.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        for tol, ls in ((0.01, ":"), (0.10, "--")):
            for sign in (1, -1):
                ax1.plot([lo, hi], [lo * (1 + sign * tol), hi * (1 + sign * tol)], color="#777777", lw=0.6, ls=ls)
        ax1.set_xlim(lo, hi)
        ax1.set_ylim(lo, hi)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("predicted by the analytic model (bytes, log scale)")
    ax1.set_ylabel("measured (bytes, log scale)")
    ax1.set_title("Memory by category: measured against predicted\n(line: equal; dotted ±1%, dashed ±10%)")
    ax1.legend(fontsize=7, loc="upper left")
    flops = ok[["predicted_flop_ratio_median", "flop_ratio_median", "checkpointing"]].dropna()
    for ckpt, style in CKPT_STYLE.items():
        rows = flops[flops["checkpointing"] == ckpt]
        ax2.plot(
            rows["predicted_flop_ratio_median"],
            rows["flop_ratio_median"],
            lw=0,
            marker=style["marker"],
            color=style["color"],
            label=style["label"],
        )
    ax2.plot([2, 4.2], [2, 4.2], color="black", lw=0.8)
    ax2.set_xlim(2, 4.2)
    ax2.set_ylim(2, 4.2)
    ax2.set_xlabel("predicted FLOP ratio (×)")
    ax2.set_ylabel("counted FLOP ratio, FlopCounterMode (×)")
    ax2.set_title("FLOP ratio fwd+bwd / fwd: counted against predicted\n(full-parameter methods; LoRA not modelled)")
    ax2.legend(fontsize=7, loc="upper left")
    add_caption(
        fig, caption + "\nPredictions: harness/predict/analytic.py from each record's config; medians over repeats."
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save(fig, stem)


def _scaling_plot(
    rows: pd.DataFrame, x: str, series: str, styles: dict, xlabel: str, title: str, caption: str, stem: Path
) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 4.6))
    unit, unit_name = memory_unit(rows["activations_bytes_median"])
    for key, (label, color) in styles.items():
        g = rows[rows[series] == key].sort_values(x)
        if g.empty:
            continue
        ax.plot(g[x], g["activations_bytes_median"] / unit, marker="o", color=color, label=f"{label}: measured")
        pred = g[["predicted_activations_bytes_median", x]].dropna()
        ax.plot(
            pred[x],
            pred["predicted_activations_bytes_median"] / unit,
            lw=0,
            marker="x",
            ms=9,
            mew=1.5,
            color="black",
            zorder=3,
            label=f"{label}: predicted (analytic)",
        )
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"activations held for backward ({unit_name})")
    ax.set_title(title)
    ax.legend(fontsize=7)
    add_caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, stem)


def plot_scaling(groups: pd.DataFrame, caption: str, directory: Path) -> list[Path]:
    """Activation memory against depth (mlp, checkpointing off/on) and against sequence length (llama,
    eager/SDPA), for the configuration family with the most points; nothing when the folder has no sweep."""
    written = []
    ok = groups[(groups["n"] > 0) & groups["activations_bytes_median"].notna()]
    mlp = family_rows(ok, "mlp")
    if not mlp.empty:
        family = mlp["config"].str.replace(r"mlp:\d+x", "mlp:Nx", regex=True) + " " + mlp["method"]
        best = family.value_counts().sort_index().idxmax()
        rows = mlp[family == best]
        if rows["depth"].nunique() >= 3:
            written += _scaling_plot(
                rows,
                "depth",
                "checkpointing",
                {False: ("checkpointing off", "#1f77b4"), True: ("checkpointing on", "#d62728")},
                "depth (layers, log₂ scale)",
                f"Activation memory against depth: {best}",
                caption,
                directory / "activations_vs_depth",
            )
    llama = family_rows(ok, "llama")
    if not llama.empty:
        family = (
            llama["preset"].astype(str)
            + " "
            + llama["precision"]
            + " "
            + llama["method"]
            + " bs"
            + llama["batch_size"].astype(str)
            + llama["checkpointing"].map({True: " ckpt", False: ""})
        )
        counts = llama.groupby(family)["seq_len"].nunique()
        best = counts.sort_index().idxmax()
        rows = llama[family == best]
        if counts[best] >= 3:
            written += _scaling_plot(
                rows,
                "seq_len",
                "attn",
                {"eager": ("eager attention", "#d62728"), "sdpa": ("SDPA", "#1f77b4")},
                "sequence length (tokens, log₂ scale)",
                f"Activation memory against sequence length: llama {best}",
                caption,
                directory / "activations_vs_seq_len",
            )
    return written
