"""`bench plot`: the comparison plots, regenerated from the results folder alone.

One folder per hardware (compute ratio, memory by category, checkpointing trade-off, throughput) and one plot
across hardware. Every figure says in its caption what hardware and which records it shows. The same folder
gives byte-identical files: inputs are sorted, SVG ids come from a fixed hash salt, and the date and software
fields that matplotlib would stamp into SVG and PNG are left out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness import __version__  # noqa: E402
from harness.records.folder import RECORDS, Stored  # noqa: E402
from harness.report.tables import grouped, memory_unit, records_frame  # noqa: E402

METHOD_ORDER = ["full_adamw", "adamw8bit", "sgd", "lora", "qlora"]
CKPT_STYLE = {False: dict(color="#1f77b4", marker="o", label="checkpointing off"),
              True: dict(color="#d62728", marker="s", label="checkpointing on")}
MEMORY_CATEGORIES = [("params", "parameters + buffers", "#4c72b0"), ("grads", "gradients", "#dd8452"),
                     ("optimizer", "optimizer state", "#55a868"), ("activations", "activations", "#c44e52"),
                     ("other", "other (temporaries at the peak)", "#8c8c8c")]
STYLE = {"svg.hashsalt": "backprop-bench", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 9,
         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100, "savefig.dpi": 100}
FORMATS = {"svg": {"Date": None, "Creator": f"backprop-bench {__version__}"},
           "png": {"Software": f"backprop-bench {__version__}"}}


def _method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _panels(groups: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per configuration label (model, precision, workload), plus torch when builds differ; only
    configurations measured with at least two of method × checkpointing — a comparison plot of one point
    compares nothing (those stay in the tables; `_omitted` counts them for the caption)."""
    several_torch = groups["torch"].nunique() > 1
    keys = groups["config"] + (" · torch " + groups["torch"] if several_torch else "")
    panels = []
    for key in sorted(keys.unique()):
        panel = groups[keys == key]
        if len(panel.drop_duplicates(["method", "checkpointing"])) >= 2:
            panels.append((key, panel))
    return panels


def _omitted(groups: pd.DataFrame) -> str:
    shown = sum(len(p) for _, p in _panels(groups))
    left = len(groups) - shown
    return (f"\n{left} configuration(s) measured with a single method and checkpointing setting are in the tables, "
            "not here.") if left else ""


def _methods(panel: pd.DataFrame) -> list[str]:
    return sorted(panel["method"].unique(), key=_method_key)


def _grid(n: int, width: float = 5.2, height: float = 3.0):
    cols = 1 if n == 1 else 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 1.0), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _caption(fig, text: str) -> None:
    fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=7, color="#444444", wrap=True)


def _source_line(hw_label: str, hw_key: str, records: int, torch_builds: list[str]) -> str:
    return (f"{hw_label} · data: {records} record(s) in {RECORDS}/{hw_key}/ · torch {', '.join(torch_builds)} · "
            f"backprop-bench {__version__} · regenerate with `bench plot`")


def _save(fig, path_stem: Path) -> list[Path]:
    written = []
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    for ext, metadata in FORMATS.items():
        final = path_stem.with_suffix(f".{ext}")
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=f".{ext}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, metadata=metadata)
            os.replace(tmp, final)
        except BaseException:
            os.unlink(tmp)
            raise
        written.append(final)
    plt.close(fig)
    return written


def _x_positions(methods: list[str]) -> dict[tuple[str, bool], float]:
    return {(m, ckpt): i + (0.15 if ckpt else -0.15) for i, m in enumerate(methods) for ckpt in (False, True)}


def _series(panel: pd.DataFrame, pos: dict, metric: str, lo: str, hi: str):
    """Per checkpointing setting with measured rows: (style, rows, x, median, [down, up] error lengths)."""
    for ckpt, style in CKPT_STYLE.items():
        rows = panel[(panel["checkpointing"] == ckpt) & (panel["n"] > 0)]
        if rows.empty:
            continue
        y = rows[f"{metric}_median"]
        yield style, rows, [pos[(m, ckpt)] for m in rows["method"]], y, [(y - rows[lo]).clip(lower=0),
                                                                         (rows[hi] - y).clip(lower=0)]


def _oom_marks(ax, panel: pd.DataFrame, pos: dict, y: float) -> None:
    for _, row in panel[panel["status"] == "oom"].iterrows():
        ax.annotate("OOM", (pos[(row["method"], row["checkpointing"])], y), ha="center", fontsize=7,
                    color=CKPT_STYLE[row["checkpointing"]]["color"])


def plot_compute_ratio(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    panels = _panels(groups)
    if not panels:
        return []
    fig, axes = _grid(len(panels))
    for ax, (title, panel) in zip(axes, panels):
        # the axis shows every median and the references; an interval reaching past 2x the largest median is
        # cut at the frame (its end is printed)
        medians = panel["compute_ratio_median"].dropna()
        top = max(4.6, float(medians.max()) * 1.3 if len(medians) else 0)
        for _, row in panel[panel["compute_ratio_ci95_hi_max"] > top].iterrows():
            x = _x_positions(_methods(panel))[(row["method"], row["checkpointing"])]
            ax.annotate(f"CI to {row['compute_ratio_ci95_hi_max']:.1f}", (x, top), xytext=(0, -10),
                        textcoords="offset points", ha="center", fontsize=6)
        methods = _methods(panel)
        pos = _x_positions(methods)
        for style, rows, x, y, err in _series(panel, pos, "compute_ratio", "compute_ratio_ci95_lo_min",
                                              "compute_ratio_ci95_hi_max"):
            ax.errorbar(x, y, yerr=err, fmt=style["marker"], color=style["color"], capsize=3, label=style["label"])
        _oom_marks(ax, panel, pos, 0.2)
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
    _caption(fig, caption + "\nError bars: 95% CI of the per-run median (distribution-free; over repeats, the envelope "
                            "of the runs' intervals). Dashed: 3×, dotted: 4× (published rules of thumb)."
             + _omitted(groups))
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return _save(fig, stem)


def plot_memory(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    panels = _panels(groups)
    if not panels:
        return []
    fig, axes = _grid(len(panels), width=6.0, height=3.4)
    for ax, (title, panel) in zip(axes, panels):
        unit, unit_name = memory_unit(pd.concat([panel["peak_step_bytes_median"], panel["peak_infer_bytes_median"]]))
        methods = _methods(panel)
        pos = _x_positions(methods)
        rows = panel[panel["n"] > 0]
        for _, row in rows.iterrows():
            x = pos[(row["method"], row["checkpointing"])]
            parts = {"params": row["params_bytes_median"] + (row["buffers_bytes_median"] or 0),
                     "grads": row["grads_bytes_median"], "optimizer": row["optimizer_bytes_median"],
                     "activations": row["activations_bytes_median"], "other": row["temp_bytes_median"]}
            bottom = 0.0
            for key, label, color in MEMORY_CATEGORIES:
                value = (parts[key] or 0) / unit
                ax.bar(x, value, width=0.28, bottom=bottom, color=color, edgecolor="white", lw=0.3,
                       hatch="//" if row["checkpointing"] else None)
                bottom += value
            ax.plot([x - 0.17, x + 0.17], [row["peak_step_bytes_median"] / unit] * 2, color="black", lw=1.6)
            ax.plot([x], [row["peak_infer_bytes_median"] / unit], marker="D", color="#ffbf00",
                    markeredgecolor="black", ms=5, lw=0)
        _oom_marks(ax, panel, pos, 0)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"memory ({unit_name})")
        ax.set_title(title + "  (left bar: checkpointing off, right, hatched: on)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, _, c in MEMORY_CATEGORIES]
    handles += [plt.Line2D([], [], color="black", lw=1.6),
                plt.Line2D([], [], marker="D", color="#ffbf00", markeredgecolor="black", lw=0)]
    labels = [label for _, label, _ in MEMORY_CATEGORIES] + ["measured peak of the training step",
                                                             "measured peak of inference (no_grad forward)"]
    fig.legend(handles, labels, loc="upper center", fontsize=7, ncols=4, bbox_to_anchor=(0.5, 0.95))
    fig.suptitle("Training vs inference memory, by category (median over repeats)", y=0.99)
    _caption(fig, caption + "\nEach category is drawn at its own peak in the step (they do not all peak at once, so "
                            "the stack can exceed the measured peak, drawn as a black line). Bytes from PyTorch's "
                            "MemTracker; NF4 quantization state counted in parameters." + _omitted(groups))
    fig.tight_layout(rect=(0, 0.07, 1, 0.86))
    return _save(fig, stem)


def checkpointing_pairs(groups: pd.DataFrame) -> pd.DataFrame:
    """Rows with checkpointing on matched to the same configuration and method with it off."""
    ok = groups[groups["n"] > 0]
    key = ["hardware", "torch", "environment", "hash_without_checkpointing", "config", "method"]
    off = ok[~ok["checkpointing"].astype(bool)].set_index(key)
    on = ok[ok["checkpointing"].astype(bool)].set_index(key)
    joined = off.join(on, lsuffix="_off", rsuffix="_on", how="inner").reset_index().copy()
    if joined.empty:
        return joined
    joined = joined.assign(
        time_added_pct=(joined["step_s_median_on"] / joined["step_s_median_off"] - 1) * 100,
        peak_saved_pct=(1 - joined["peak_step_bytes_median_on"] / joined["peak_step_bytes_median_off"]) * 100,
        activations_saved_pct=(1 - joined["activations_bytes_median_on"] / joined["activations_bytes_median_off"]) * 100)
    return joined.sort_values(key).reset_index(drop=True)


def plot_checkpointing(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    pairs = checkpointing_pairs(groups)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    configs = sorted(pairs["config"].unique()) if not pairs.empty else []
    markers = dict(zip(configs, "os^vDP*X<>"))
    colors = {m: c for m, c in zip(METHOD_ORDER, ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728"])}
    for _, row in pairs.iterrows():
        style = dict(marker=markers.get(row["config"], "o"), color=colors.get(row["method"], "#333333"))
        ax.plot(row["time_added_pct"], row["peak_saved_pct"], ms=7, lw=0, **style)
        ax.plot(row["time_added_pct"], row["activations_saved_pct"], ms=7, lw=0, markerfacecolor="none", **style)
        ax.plot([row["time_added_pct"]] * 2, [row["peak_saved_pct"], row["activations_saved_pct"]], color="#bbbbbb",
                lw=0.6, zorder=0)
    ax.plot([30], [50], marker="*", ms=14, color="#999999", lw=0)
    ax.annotate("seed claim: 50% saved for ~30% time", (30, 50), textcoords="offset points", xytext=(8, 6),
                fontsize=7, color="#666666")
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("time added by checkpointing: step time on / off − 1 (%)")
    ax.set_ylabel("memory saved by checkpointing (%)")
    handles = [plt.Line2D([], [], marker=markers[c], color="#333333", lw=0, label=c) for c in configs]
    handles += [plt.Line2D([], [], marker="s", color=colors[m], lw=0, label=m)
                for m in METHOD_ORDER if not pairs.empty and m in set(pairs["method"])]
    handles += [plt.Line2D([], [], marker="o", color="#333333", lw=0, label="filled: peak of the training step"),
                plt.Line2D([], [], marker="o", color="#333333", markerfacecolor="none", lw=0,
                           label="hollow: activations held for backward")]
    ax.legend(handles=handles, fontsize=7, loc="best")
    if pairs.empty:
        ax.text(0.5, 0.5, "no configuration measured with checkpointing both on and off", transform=ax.transAxes,
                ha="center")
    ax.set_title("Gradient checkpointing: memory saved against time added (medians over repeats)")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, stem)


def plot_throughput(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    panels = _panels(groups)
    if not panels:
        return []
    fig, axes = _grid(len(panels))
    for ax, (title, panel) in zip(axes, panels):
        methods = _methods(panel)
        pos = _x_positions(methods)
        for style, rows, x, y, err in _series(panel, pos, "step_tokens_per_s", "step_tokens_per_s_min",
                                              "step_tokens_per_s_max"):
            ax.bar(x, y, width=0.28, color=style["color"], label=style["label"] + " (training step)", yerr=err,
                   capsize=2)
            ax.plot(x, rows["infer_tokens_per_s_median"], lw=0, marker="_", ms=12, mew=2, color="black")
        _oom_marks(ax, panel, pos, 0)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("tokens / s")
        ax.set_title(title)
    axes[0].plot([], [], lw=0, marker="_", ms=12, mew=2, color="black", label="inference (no_grad forward)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Throughput: tokens per second, full training step vs inference (median; bars: min–max)")
    _caption(fig, caption + _omitted(groups))
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return _save(fig, stem)


def plot_across_hardware(groups: pd.DataFrame, caption: str, stem: Path, top: int = 8) -> list[Path]:
    ok = groups[groups["n"] > 0].copy()
    ok["case"] = (ok["config"] + " " + ok["method"] + ok["checkpointing"].map({True: " ckpt", False: ""}))
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
    fig.suptitle(f"The same configurations across hardware ({len(hardware)} in this folder; {shared} configuration(s) "
                 f"measured on two or more)")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, stem)


PREDICTED_QUANTITIES = [("params_bytes", "parameters", "#4c72b0"), ("grads_bytes", "gradients", "#dd8452"),
                        ("optimizer_bytes", "optimizer state", "#55a868"),
                        ("activations_bytes", "activations", "#c44e52")]


def plot_predicted_vs_measured(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
    from harness.spec.analytic import TOLERANCE

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    ok = groups[groups["n"] > 0]
    values = []
    for key, label, color in PREDICTED_QUANTITIES:
        pairs = ok[[f"predicted_{key}_median", f"{key}_median"]].dropna()
        pairs = pairs[(pairs > 0).all(axis=1)]
        ax1.plot(pairs.iloc[:, 0], pairs.iloc[:, 1], lw=0, marker="o", ms=5, color=color, alpha=0.8,
                 label=f"{label} (±{TOLERANCE[key]:.0%})")
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
        ax2.plot(rows["predicted_flop_ratio_median"], rows["flop_ratio_median"], lw=0, marker=style["marker"],
                 color=style["color"], label=style["label"])
    ax2.plot([2, 4.2], [2, 4.2], color="black", lw=0.8)
    ax2.set_xlim(2, 4.2)
    ax2.set_ylim(2, 4.2)
    ax2.set_xlabel("predicted FLOP ratio (×)")
    ax2.set_ylabel("counted FLOP ratio, FlopCounterMode (×)")
    ax2.set_title("FLOP ratio fwd+bwd / fwd: counted against predicted\n(full-parameter methods; LoRA not modelled)")
    ax2.legend(fontsize=7, loc="upper left")
    _caption(fig, caption + "\nPredictions: harness/spec/analytic.py from each record's config; medians over repeats.")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, stem)


def _scaling_plot(rows: pd.DataFrame, x: str, series: str, styles: dict, xlabel: str, title: str, caption: str,
                  stem: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 4.6))
    unit, unit_name = memory_unit(rows["activations_bytes_median"])
    for key, (label, color) in styles.items():
        g = rows[rows[series] == key].sort_values(x)
        if g.empty:
            continue
        ax.plot(g[x], g["activations_bytes_median"] / unit, marker="o", color=color, label=f"{label}: measured")
        pred = g[["predicted_activations_bytes_median", x]].dropna()
        ax.plot(pred[x], pred["predicted_activations_bytes_median"] / unit, lw=0, marker="x", ms=9, mew=1.5,
                color="black", zorder=3, label=f"{label}: predicted (analytic)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"activations held for backward ({unit_name})")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, stem)


def plot_scaling(groups: pd.DataFrame, caption: str, directory: Path) -> list[Path]:
    """Activation memory against depth (mlp, checkpointing off/on) and against sequence length (llama,
    eager/SDPA), for the configuration family with the most points; nothing when the folder has no sweep."""
    written = []
    ok = groups[(groups["n"] > 0) & groups["activations_bytes_median"].notna()]
    mlp = ok[ok["model"] == "mlp"]
    if not mlp.empty:
        family = mlp["config"].str.replace(r"mlp:\d+x", "mlp:Nx", regex=True) + " " + mlp["method"]
        best = family.value_counts().sort_index().idxmax()
        rows = mlp[family == best]
        if rows["depth"].nunique() >= 3:
            written += _scaling_plot(rows, "depth", "checkpointing",
                                     {False: ("checkpointing off", "#1f77b4"), True: ("checkpointing on", "#d62728")},
                                     "depth (layers, log₂ scale)", f"Activation memory against depth: {best}",
                                     caption, directory / "activations_vs_depth")
    llama = ok[ok["model"] == "llama"]
    if not llama.empty:
        family = (llama["preset"].astype(str) + " " + llama["precision"] + " " + llama["method"] + " bs"
                  + llama["batch_size"].astype(str) + llama["checkpointing"].map({True: " ckpt", False: ""}))
        counts = llama.groupby(family)["seq_len"].nunique()
        best = counts.sort_index().idxmax()
        rows = llama[family == best]
        if counts[best] >= 3:
            written += _scaling_plot(rows, "seq_len", "attn",
                                     {"eager": ("eager attention", "#d62728"), "sdpa": ("SDPA", "#1f77b4")},
                                     "sequence length (tokens, log₂ scale)",
                                     f"Activation memory against sequence length: llama {best}", caption,
                                     directory / "activations_vs_seq_len")
    return written


def write_plots(stored: list[Stored], root: Path, out: Path) -> list[Path]:
    frame = records_frame(stored, root)
    groups = grouped(frame)
    written: list[Path] = []
    if groups.empty:
        return written
    # Plots show the current schema's records; older majors stay in their own tables.
    groups = groups[groups["schema_major"] == groups["schema_major"].max()]
    with plt.rc_context(STYLE):
        for hw, hw_groups in groups.groupby("hardware", sort=True):
            hw_frame = frame[frame["hardware"] == hw]
            caption = _source_line(hw_groups.iloc[0]["hardware_label"], hw, len(hw_frame),
                                   sorted(hw_frame["torch"].unique()))
            written += plot_compute_ratio(hw_groups, caption, out / hw / "compute_ratio")
            written += plot_memory(hw_groups, caption, out / hw / "memory_by_category")
            written += plot_checkpointing(hw_groups, caption, out / hw / "checkpointing_tradeoff")
            written += plot_throughput(hw_groups, caption, out / hw / "throughput")
            written += plot_predicted_vs_measured(hw_groups, caption, out / hw / "predicted_vs_measured")
            written += plot_scaling(hw_groups, caption, out / hw)
        caption = (f"data: {len(frame)} record(s) in {RECORDS}/ ({', '.join(sorted(groups['hardware'].unique()))}) · "
                   f"backprop-bench {__version__} · regenerate with `bench plot`")
        written += plot_across_hardware(groups, caption, out / "across_hardware")
    return written
