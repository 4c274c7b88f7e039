"""Figures a reader can read: a panel plot with more panels than fit on two screens is drawn as pages
(harness/report/figure.py paged), and the checkpointing trade-off is one panel per model family with its legend
outside the data. Checked on the committed results folder, whose largest hardware has 17 memory panels."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg

from harness.records.folder import read_folder
from harness.report.figure import PANELS_PER_FIGURE, panels_of
from harness.report.figure_pages import base_stem
from harness.report.frame import grouped, records_frame
from harness.report.plots import plot_checkpointing, plot_memory

RESULTS = Path(__file__).resolve().parents[1] / "results"
TWO_SCREENS_PX = 2160  # two 1080-pixel screens


def _largest_hardware():
    records, _ = read_folder(RESULTS)
    groups = grouped(records_frame(records, RESULTS))
    hw = groups.groupby("hardware").size().idxmax()
    return groups[groups["hardware"] == hw]


def test_memory_plot_is_paged_and_no_page_is_taller_than_two_screens(tmp_path):
    groups = _largest_hardware()
    panels = len(panels_of(groups))
    assert panels > PANELS_PER_FIGURE, "the committed folder should exercise paging"
    written = plot_memory(groups, "caption", tmp_path / "memory_by_category")
    pngs = sorted(p for p in written if p.suffix == ".png")
    assert len(pngs) == math.ceil(panels / PANELS_PER_FIGURE)
    assert {base_stem(p) for p in pngs} == {"memory_by_category"}
    assert (tmp_path / "memory_by_category.png") in pngs and (tmp_path / "memory_by_category-2.png") in pngs
    for png in pngs:
        assert mpimg.imread(png).shape[0] <= TWO_SCREENS_PX, png.name


def test_checkpointing_tradeoff_has_a_panel_per_family(tmp_path):
    groups = _largest_hardware()
    [png] = [p for p in plot_checkpointing(groups, "caption", tmp_path / "ckpt") if p.suffix == ".png"]
    height, width = mpimg.imread(png).shape[:2]
    assert height <= TWO_SCREENS_PX and width > height / 2
    svg = (tmp_path / "ckpt.svg").read_text()
    families = sorted(set(groups["model"]))
    assert all(f"model family: {f}" in svg for f in families), families
