"""`bench plot`: the comparison plots, regenerated from the results folder alone.

One folder per hardware (compute ratio, memory by category, checkpointing trade-off, throughput) and one plot
across hardware. Every figure says in its caption what hardware and which records it shows. The same folder
gives byte-identical files: inputs are sorted, SVG ids come from a fixed hash salt, and the date and software
fields that matplotlib would stamp into SVG and PNG are left out.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness import __version__  # noqa: E402
from harness.records.folder import RECORDS  # noqa: E402
from harness.records.record import Record  # noqa: E402
from harness.records.safe_fs import confined  # noqa: E402
from harness.report.figure import (
    MEMORY_CATEGORIES,
    METHOD_ORDER,
    STYLE,
    add_caption,
    grid,
    methods_of,  # noqa: E402
    omitted,
    oom_marks,
    paged,
    save,
    series,
    source_line,
    x_positions,
)
from harness.report.frame import grouped, memory_unit, quiet_fragmentation, records_frame  # noqa: E402
from harness.report.plots_architectures import plot_architectures  # noqa: E402
from harness.report.plots_model import plot_predicted_vs_measured, plot_scaling  # noqa: E402
from harness.report.selection import checkpointing_pairs  # noqa: E402


@paged
def plot_compute_ratio(panels: list, groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    fig, axes = grid(len(panels))
    for ax, (title, panel) in zip(axes, panels):
        # the axis shows every median and the references; an interval reaching past 2x the largest median is
        # cut at the frame (its end is printed)
        medians = panel["compute_ratio_median"].dropna()
        top = max(4.6, float(medians.max()) * 1.3 if len(medians) else 0)
        for _, row in panel[panel["compute_ratio_ci95_hi_max"] > top].iterrows():
            x = x_positions(methods_of(panel))[(row["method"], row["checkpointing"])]
            ax.annotate(
                f"CI to {row['compute_ratio_ci95_hi_max']:.1f}",
                (x, top),
                xytext=(0, -10),
                textcoords="offset points",
                ha="center",
                fontsize=6,
            )
        methods = methods_of(panel)
        pos = x_positions(methods)
        for style, rows, x, y, err in series(
            panel, pos, "compute_ratio", "compute_ratio_ci95_lo_min", "compute_ratio_ci95_hi_max"
        ):
            ax.errorbar(x, y, yerr=err, fmt=style["marker"], color=style["color"], capsize=3, label=style["label"])
        oom_marks(ax, panel, pos, 0.2)
        ax.axhline(3, color="#555555", ls="--", lw=0.8)
        ax.axhline(4, color="#555555", ls=":", lw=0.8)
        ax.text(len(methods) - 0.5, 3, " 3×: backward = 2× forward", va="bottom", ha="right", fontsize=7)
        ax.text(len(methods) - 0.5, 4, " 4×: + full recomputation", va="bottom", ha="right", fontsize=7)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(0, top)
        ax.set_ylabel("compute ratio t(fwd+bwd) / t(fwd) (×)")
        ax.set_title(title)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle("Compute ratio: forward+backward time over forward time (median over repeats)")
    add_caption(
        fig,
        caption
        + "\nError bars: CI of the per-run median (distribution-free, its level per record on the record pages; "
        "over repeats, the envelope "
        "of the runs' intervals). Dashed: 3×, dotted: 4× (published rules of thumb)." + omitted(groups),
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save(fig, stem)


def _memory_stack(ax, row: pd.Series, x: float, unit: int) -> None:
    """One configuration's bar: its categories stacked, its measured training and inference peaks marked."""
    parts = {
        "params": row["params_bytes_median"] + (row["buffers_bytes_median"] or 0),
        "grads": row["grads_bytes_median"],
        "optimizer": row["optimizer_bytes_median"],
        "activations": row["activations_bytes_median"],
        "other": row["temp_bytes_median"],
    }
    bottom = 0.0
    for key, label, color in MEMORY_CATEGORIES:
        value = (parts[key] or 0) / unit
        ax.bar(
            x,
            value,
            width=0.28,
            bottom=bottom,
            color=color,
            edgecolor="white",
            lw=0.3,
            hatch="//" if row["checkpointing"] else None,
        )
        bottom += value
    ax.plot([x - 0.17, x + 0.17], [row["peak_step_bytes_median"] / unit] * 2, color="black", lw=1.6)
    ax.plot(
        [x],
        [row["peak_infer_bytes_median"] / unit],
        marker="D",
        color="#ffbf00",
        markeredgecolor="black",
        ms=5,
        lw=0,
    )


def _memory_legend(fig) -> None:
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, _, c in MEMORY_CATEGORIES]
    handles += [
        plt.Line2D([], [], color="black", lw=1.6),
        plt.Line2D([], [], marker="D", color="#ffbf00", markeredgecolor="black", lw=0),
    ]
    labels = [label for _, label, _ in MEMORY_CATEGORIES] + [
        "measured peak of the training step",
        "measured peak of inference (no_grad forward)",
    ]
    fig.legend(handles, labels, loc="upper center", fontsize=7, ncols=4, bbox_to_anchor=(0.5, 0.95))


@paged
def plot_memory(panels: list, groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    fig, axes = grid(len(panels), width=6.0, height=3.4)
    for ax, (title, panel) in zip(axes, panels):
        unit, unit_name = memory_unit(pd.concat([panel["peak_step_bytes_median"], panel["peak_infer_bytes_median"]]))
        methods = methods_of(panel)
        pos = x_positions(methods)
        for _, row in panel[panel["n"] > 0].iterrows():
            _memory_stack(ax, row, pos[(row["method"], row["checkpointing"])], unit)
        oom_marks(ax, panel, pos, 0)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"memory ({unit_name})")
        ax.set_title(title + "  (left bar: checkpointing off, right, hatched: on)")
    _memory_legend(fig)
    fig.suptitle("Training vs inference memory, by category (median over repeats)", y=0.99)
    add_caption(
        fig,
        caption + "\nEach category is drawn at its own peak in the step (they do not all peak at once, so "
        "the stack can exceed the measured peak, drawn as a black line). Bytes from PyTorch's "
        "MemTracker; NF4 quantization state counted in parameters." + omitted(groups),
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.86))
    return save(fig, stem)


def _checkpointing_legend(fig, pairs: pd.DataFrame, configs: list[str], markers: dict, colors: dict) -> None:
    """Markers name the configurations, colours the methods; filled the step's peak, hollow the activations. The
    legend sits right of the panels, outside the data."""
    handles = [plt.Line2D([], [], marker=markers[c], color="#333333", lw=0, label=c) for c in configs]
    handles += [
        plt.Line2D([], [], marker="s", color=colors[m], lw=0, label=m)
        for m in METHOD_ORDER
        if not pairs.empty and m in set(pairs["method"])
    ]
    handles += [
        plt.Line2D([], [], marker="o", color="#333333", lw=0, label="filled: peak of the training step"),
        plt.Line2D([], [], marker="o", color="#333333", markerfacecolor="none", lw=0, label="hollow: activations held"),
    ]
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(0.70, 0.5), frameon=False)


def _checkpointing_panel(ax, rows: pd.DataFrame, markers: dict, colors: dict) -> None:
    for _, row in rows.iterrows():
        style = dict(marker=markers.get(row["config"], "o"), color=colors.get(row["method"], "#333333"))
        ax.plot(row["time_added_pct"], row["peak_saved_pct"], ms=7, lw=0, **style)
        ax.plot(row["time_added_pct"], row["activations_saved_pct"], ms=7, lw=0, markerfacecolor="none", **style)
        ax.plot(
            [row["time_added_pct"]] * 2,
            [row["peak_saved_pct"], row["activations_saved_pct"]],
            color="#bbbbbb",
            lw=0.6,
            zorder=0,
        )
    ax.plot([30], [50], marker="*", ms=14, color="#999999", lw=0)
    ax.annotate("seed: 50% for ~30%", (30, 50), textcoords="offset points", xytext=(8, 6), fontsize=7, color="#666")
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("time added: step time on / off − 1 (%)")
    ax.set_ylabel("memory saved (%)")


def plot_checkpointing(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    """One panel per model family (markers within a panel name its configurations, colours the methods)."""
    with quiet_fragmentation():
        pairs = checkpointing_pairs(groups)
    if not pairs.empty:  # a pair's family: the model of the configuration it pairs
        family = dict(zip(groups["config"], groups["model"]))
        pairs = pairs.assign(model=pairs["config"].map(family).fillna("other"))
    models = sorted(pairs["model"].unique()) if not pairs.empty else [None]
    fig, axes = plt.subplots(len(models), 1, figsize=(10.5, 3.6 * len(models) + 1.0), squeeze=False)
    configs = sorted(pairs["config"].unique()) if not pairs.empty else []
    markers = dict(zip(configs, "os^vDP*X<>" * 4))
    colors = {m: c for m, c in zip(METHOD_ORDER, ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728"])}
    for ax, model in zip(axes[:, 0], models):
        if model is None:
            ax.text(0.5, 0.5, "no configuration measured with checkpointing on and off", transform=ax.transAxes)
            continue
        _checkpointing_panel(ax, pairs[pairs["model"] == model], markers, colors)
        ax.set_title(f"model family: {model}", fontsize=9)
    _checkpointing_legend(fig, pairs, configs, markers, colors)
    fig.suptitle("Gradient checkpointing: memory saved against time added (medians over repeats)")
    add_caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 0.69, 0.96))
    return save(fig, stem)


@paged
def plot_throughput(panels: list, groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    fig, axes = grid(len(panels))
    for ax, (title, panel) in zip(axes, panels):
        methods = methods_of(panel)
        pos = x_positions(methods)
        for style, rows, x, y, err in series(
            panel, pos, "step_tokens_per_s", "step_tokens_per_s_min", "step_tokens_per_s_max"
        ):
            ax.bar(
                x, y, width=0.28, color=style["color"], label=style["label"] + " (training step)", yerr=err, capsize=2
            )
            ax.plot(x, rows["infer_tokens_per_s_median"], lw=0, marker="_", ms=12, mew=2, color="black")
        oom_marks(ax, panel, pos, 0)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("tokens / s")
        ax.set_title(title)
    axes[0].plot([], [], lw=0, marker="_", ms=12, mew=2, color="black", label="inference (no_grad forward)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Throughput: tokens per second, full training step vs inference (median; bars: min–max)")
    add_caption(fig, caption + omitted(groups))
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return save(fig, stem)


def plot_across_hardware(groups: pd.DataFrame, caption: str, stem: Path, top: int = 8) -> list[Path]:
    ok = groups[groups["n"] > 0].copy()
    ok["case"] = ok["config"] + " " + ok["method"] + ok["checkpointing"].map({True: " ckpt", False: ""})
    counts = ok.groupby("case")["hardware"].nunique()
    cases = sorted(counts.index, key=lambda c: (-counts[c], c))[:top]
    hardware = sorted(ok["hardware"].unique())
    labels = dict(zip(ok["hardware"], ok["hardware_label"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * max(len(cases), 4) + 2.2))
    height = 0.8 / max(len(hardware), 1)
    for i, hw in enumerate(hardware):
        rows = ok[(ok["hardware"] == hw) & ok["case"].isin(cases)].drop_duplicates("case")
        y = [cases.index(c) + (i - (len(hardware) - 1) / 2) * height for c in rows["case"]]
        ax1.barh(y, rows["compute_ratio_median"], height=height, label=labels[hw], color=f"C{i}")
        # Throughput spans orders of magnitude across hardware: a log axis, so points rather than bars
        # (a bar's length on a log axis depends on where the axis happens to start).
        ax2.plot(rows["step_tokens_per_s_median"], y, lw=0, marker="o", color=f"C{i}", label=labels[hw])
    for ax in (ax1, ax2):
        ax.set_yticks(range(len(cases)), cases, fontsize=7)
        ax.invert_yaxis()
    ax1.axvline(3, color="#555555", ls="--", lw=0.8)
    ax1.set_xlabel("compute ratio t(fwd+bwd) / t(fwd) (×)")
    ax2.set_xscale("log")
    ax2.set_xlabel("training-step throughput (tokens / s, log scale)")
    ax2.set_yticklabels([])
    ax1.legend(fontsize=7, loc="lower right")
    shared = int((counts >= 2).sum())
    fig.suptitle(
        f"The same configurations across hardware ({len(hardware)} in this folder; {shared} configuration(s) "
        f"measured on two or more)"
    )
    add_caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return save(fig, stem)


def write_plots(records: list[Record], root: Path, out: Path, include_noisy: bool = False) -> list[Path]:
    frame = records_frame(records, root, include_noisy)  # noisy and contended records left out unless included
    groups = grouped(frame)
    written: list[Path] = []
    if groups.empty:
        return written
    # Plots show the current schema's records; older majors stay in their own tables.
    groups = groups[groups["schema_major"] == groups["schema_major"].max()]
    with plt.rc_context(STYLE), confined(root):
        for hw, hw_groups in groups.groupby("hardware", sort=True):
            hw_frame = frame[frame["hardware"] == hw]
            caption = source_line(
                hw_groups.iloc[0]["hardware_label"],
                hw,
                len(hw_frame),
                sorted(hw_frame["torch"].unique()),
                int((hw_frame["left_out"] != "").sum()),
            )
            written += plot_compute_ratio(hw_groups, caption, out / hw / "compute_ratio")
            written += plot_memory(hw_groups, caption, out / hw / "memory_by_category")
            written += plot_checkpointing(hw_groups, caption, out / hw / "checkpointing_tradeoff")
            written += plot_throughput(hw_groups, caption, out / hw / "throughput")
            written += plot_predicted_vs_measured(hw_groups, caption, out / hw / "predicted_vs_measured")
            written += plot_scaling(hw_groups, caption, out / hw)
            written += plot_architectures(hw_groups, caption, out / hw / "predicted_vs_measured_architectures")
        caption = (
            f"data: {len(frame)} record(s) in {RECORDS}/ ({', '.join(sorted(groups['hardware'].unique()))}) · "
            f"backprop-bench {__version__} · regenerate with `bench plot`"
        )
        written += plot_across_hardware(groups, caption, out / "across_hardware")
    return written
