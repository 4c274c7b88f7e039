"""A paged figure's files found again in order, and the site showing every page of a claim's figure."""

from pathlib import Path

from harness.report.figure_pages import base_stem, figure_pages, in_page_order, page_number
from harness.report.site.markup import figure


def test_pages_are_found_in_order_and_stop_at_the_first_gap(tmp_path):
    for name in ("memory_by_category", "memory_by_category-2", "memory_by_category-3", "memory_by_category-5"):
        (tmp_path / f"{name}.svg").write_text("<svg/>")
    pages = figure_pages(tmp_path, "memory_by_category")
    assert [p.name for p in pages] == ["memory_by_category.svg", "memory_by_category-2.svg", "memory_by_category-3.svg"]
    assert figure_pages(tmp_path, "throughput") == []
    # a plain sort puts "-2" before the first page; the page order does not
    names = in_page_order(sorted(tmp_path.glob("*.svg")))
    assert [page_number(p) for p in names] == [1, 2, 3, 5]
    assert {base_stem(p) for p in names} == {"memory_by_category"}


def test_a_page_says_its_number_in_its_alt_text(tmp_path):
    first, second = Path(tmp_path / "compute_ratio.svg"), Path(tmp_path / "compute_ratio-2.svg")
    assert "page" not in figure(first, tmp_path, "a CPU")
    assert 'alt="Compute ratio' in figure(first, tmp_path, "a CPU")
    assert ", on a CPU, page 2." in figure(second, tmp_path, "a CPU")
