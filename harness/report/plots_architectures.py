"""Predicted against measured across architectures (model=llama and model=hf, by model_type): what `bench estimate`
rests on. Left: activations, measured / predicted, per architecture; right: the training step's peak against the
predicted params + grads + optimizer state + activations (temporaries are not in the prediction)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.figure import CKPT_STYLE, add_caption, method_key, save  # noqa: E402

METHOD_COLORS = {"full_adamw": "#4c72b0", "adamw8bit": "#55a868", "lora": "#dd8452", "qlora": "#c44e52", "sgd": "#777"}
BANDS = ((0.05, ":"), (0.10, "--"))  # the CPU tests' tolerance, the record's tolerance for activations
PREDICTED_PEAK = ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes")


def _points(groups: pd.DataFrame) -> pd.DataFrame:
    ok = groups[(groups["n"] > 0) & groups["model_type"].notna()].copy()
    ok["activations_ratio"] = ok["activations_bytes_median"] / ok["predicted_activations_bytes_median"]
    predicted_peak = sum(ok[f"predicted_{k}_median"] for k in PREDICTED_PEAK)
    ok["peak_ratio"] = ok["peak_step_bytes_median"] / predicted_peak
    return ok


def plot_architectures(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    points = _points(groups)
    points = points[points["activations_ratio"].notna() | points["peak_ratio"].notna()]
    if points.empty:
        return []
    kinds = sorted(points["model_type"].unique())
    x = {kind: i for i, kind in enumerate(kinds)}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(kinds) + 4), 4.6))
    for ax, column, title in (
        (axes[0], "activations_ratio", "Activations: measured / predicted"),
        (axes[1], "peak_ratio", "Step peak: measured / predicted\n(params + grads + optimizer + activations)"),
    ):
        rows = points[points[column].notna()]
        methods = sorted(rows["method"].unique(), key=method_key)
        for m_i, method in enumerate(methods):
            for ckpt, style in CKPT_STYLE.items():
                sel = rows[(rows["method"] == method) & (rows["checkpointing"] == ckpt)]
                if sel.empty:
                    continue
                offset = (m_i - (len(methods) - 1) / 2) * 0.12 + (0.03 if ckpt else -0.03)
                ax.plot(
                    [x[k] + offset for k in sel["model_type"]],
                    sel[column],
                    lw=0,
                    marker=style["marker"],
                    ms=6,
                    color=METHOD_COLORS.get(method, "#333"),
                    alpha=0.85,
                    label=f"{method}, {style['label']}",
                )
        ax.axhline(1.0, color="black", lw=0.8)
        for tol, ls in BANDS:
            for sign in (1, -1):
                ax.axhline(1 + sign * tol, color="#777", lw=0.6, ls=ls)
        ax.set_xticks(range(len(kinds)), kinds, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(kinds) - 0.4)
        ax.set_ylabel("measured / predicted (ratio)")
        ax.set_title(title + "\n(line: equal; dotted ±5%, dashed ±10%)", fontsize=9)
        ax.legend(fontsize=6, loc="best")
    add_caption(
        fig,
        caption + "\nPredictions: each record's `predicted` block (harness/predict/analytic.py); medians over repeats; "
        "architectures by model_type (model=llama as llama).",
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save(fig, stem)
