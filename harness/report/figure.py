"""What every figure shares: the style that makes regenerated files byte-identical, panels per configuration,
method order, captions naming their source, and the one save (SVG + PNG through harness/records/io.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import io  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness import __version__  # noqa: E402
from harness.records.folder import RECORDS  # noqa: E402
from harness.records.io import replace_file  # noqa: E402
from harness.report.figure_pages import page_stem  # noqa: E402

METHOD_ORDER = ["full_adamw", "adamw8bit", "sgd", "lora", "qlora"]
CKPT_STYLE = {
    False: dict(color="#1f77b4", marker="o", label="checkpointing off"),
    True: dict(color="#d62728", marker="s", label="checkpointing on"),
}
MEMORY_CATEGORIES = [
    ("params", "parameters + buffers", "#4c72b0"),
    ("grads", "gradients", "#dd8452"),
    ("optimizer", "optimizer state", "#55a868"),
    ("activations", "activations", "#c44e52"),
    ("other", "other (temporaries at the peak)", "#8c8c8c"),
]
STYLE = {
    "svg.hashsalt": "backprop-bench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 100,
}
FORMATS = {
    "svg": {"Date": None, "Creator": f"backprop-bench {__version__}"},
    "png": {"Software": f"backprop-bench {__version__}"},
}


def method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def panels_of(groups: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per configuration label (model, precision, workload), plus torch when builds differ; only
    configurations measured with at least two of method × checkpointing — a comparison plot of one point
    compares nothing (those stay in the tables; `omitted` counts them for the caption)."""
    several_torch = groups["torch"].nunique() > 1
    keys = groups["config"] + (" · torch " + groups["torch"] if several_torch else "")
    panels = []
    for key in sorted(keys.unique()):
        panel = groups[keys == key]
        if len(panel.drop_duplicates(["method", "checkpointing"])) >= 2:
            panels.append((key, panel))
    return panels


def omitted(groups: pd.DataFrame) -> str:
    shown = sum(len(p) for _, p in panels_of(groups))
    left = len(groups) - shown
    return (
        (
            f"\n{left} configuration(s) measured with a single method and checkpointing setting are in the tables, "
            "not here."
        )
        if left
        else ""
    )


# A figure holds at most this many panels (3 rows of 2, ~1,200 px tall at savefig.dpi): more panels go on further
# pages, `<stem>-2`, `<stem>-3`, ..., so that no figure is taller than two screens (17 panels once made 3,160 px).
PANELS_PER_FIGURE = 6


def paged(draw):
    """A panel plot drawn as pages of at most PANELS_PER_FIGURE panels: `draw(panels, groups, caption, stem)`
    draws one page; the plot returns every page's files (none when no configuration makes a panel)."""

    def plot(groups: pd.DataFrame, caption: str, stem: Path) -> list[Path]:
        panels = panels_of(groups)
        count = -(-len(panels) // PANELS_PER_FIGURE)
        written: list[Path] = []
        for page in range(count):
            chunk = panels[page * PANELS_PER_FIGURE : (page + 1) * PANELS_PER_FIGURE]
            note = f" · page {page + 1} of {count}" if count > 1 else ""
            written += draw(chunk, groups, caption + note, page_stem(stem, page))
        return written

    plot.__name__ = plot.__qualname__ = draw.__name__
    plot.__doc__ = draw.__doc__
    return plot


def methods_of(panel: pd.DataFrame) -> list[str]:
    return sorted(panel["method"].unique(), key=method_key)


def grid(n: int, width: float = 5.2, height: float = 3.0):
    cols = 1 if n == 1 else 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 1.0), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def add_caption(fig, text: str) -> None:
    fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=7, color="#444444", wrap=True)


def source_line(hw_label: str, hw_key: str, records: int, torch_builds: list[str], gated: int = 0) -> str:
    """Where a figure's data come from; `gated`: records whose noisy or contended timings it does not show."""
    gate = f" (timings of {gated} noisy or contended left out: `bench plot --include-noisy`)" if gated else ""
    return (
        f"{hw_label} · data: {records} record(s){gate} in {RECORDS}/{hw_key}/ · torch {', '.join(torch_builds)} · "
        f"backprop-bench {__version__} · regenerate with `bench plot`"
    )


def save(fig, path_stem: Path) -> list[Path]:
    written = []
    for ext, metadata in FORMATS.items():
        image = io.BytesIO()
        fig.savefig(image, format=ext, metadata=metadata)
        written.append(replace_file(path_stem.with_suffix(f".{ext}"), image.getvalue()))
    plt.close(fig)
    return written


def x_positions(methods: list[str]) -> dict[tuple[str, bool], float]:
    return {(m, ckpt): i + (0.15 if ckpt else -0.15) for i, m in enumerate(methods) for ckpt in (False, True)}


def series(panel: pd.DataFrame, pos: dict, metric: str, lo: str, hi: str):
    """Per checkpointing setting with measured rows: (style, rows, x, median, [down, up] error lengths)."""
    for ckpt, style in CKPT_STYLE.items():
        rows = panel[(panel["checkpointing"] == ckpt) & (panel["n"] > 0) & panel[f"{metric}_median"].notna()]
        if rows.empty:
            continue
        y = rows[f"{metric}_median"]
        yield (
            style,
            rows,
            [pos[(m, ckpt)] for m in rows["method"]],
            y,
            [(y - rows[lo]).clip(lower=0), (rows[hi] - y).clip(lower=0)],
        )


def oom_marks(ax, panel: pd.DataFrame, pos: dict, y: float) -> None:
    for _, row in panel[panel["status"] == "oom"].iterrows():
        ax.annotate(
            "OOM",
            (pos[(row["method"], row["checkpointing"])], y),
            ha="center",
            fontsize=7,
            color=CKPT_STYLE[row["checkpointing"]]["color"],
        )
