"""How a paged figure's files are named, and found again: `memory_by_category.svg`, `memory_by_category-2.svg`, ...
(harness/report/figure.py draws them; the site and `bench plot` list them). No matplotlib here."""

from __future__ import annotations

from pathlib import Path


def page_stem(stem: Path, page: int) -> Path:
    """The file stem of a figure's page (0-based): the first keeps the figure's own name."""
    return stem if page == 0 else stem.with_name(f"{stem.name}-{page + 1}")


def base_stem(path: Path) -> str:
    """The figure a file is a page of: `memory_by_category-2.svg` -> `memory_by_category`."""
    name, _, page = path.stem.rpartition("-")
    return name if name and page.isdigit() else path.stem


def page_number(path: Path) -> int:
    """A page's number (1 for the figure's own file)."""
    return 1 if base_stem(path) == path.stem else int(path.stem.rpartition("-")[2])


def figure_pages(folder: Path, stem: str, suffix: str = ".svg") -> list[Path]:
    """Every page of figure `stem` in `folder`, in order: the first, then -2, -3, ... while they exist."""
    out: list[Path] = []
    while (path := page_stem(folder / stem, len(out)).with_suffix(suffix)).exists():
        out.append(path)
    return out


def in_page_order(paths: list[Path]) -> list[Path]:
    """Files sorted by the figure they belong to, then by page (a plain sort puts `-2` before the first page)."""
    return sorted(paths, key=lambda p: (base_stem(p), page_number(p)))
