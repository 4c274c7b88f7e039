"""`bench site`: the results folder as a static website, default <results>/site/.

    index.html               every claim's verdict at a glance, the hardware covered
    claims/<id>.html         one per claim of suites/claims.yaml
    explorer.html            every record as a row: filter, sort, follow; records.csv beside it
    records/<id>.html        one per record: figures by category, predicted vs measured, provenance, cite
    hardware/index.html, hardware/<hardware>.html   what was measured where, side by side across hardware
    style.css, site.js       the only assets (shipped in this package); nothing is fetched from the network

Pages link the plots of `bench plot` where they lie in the results folder (relative links: the site works opened
from disk and served as static files, as long as the folder is served with it). The same folder gives
byte-identical pages: no build time, inputs sorted, links relative; a file whose bytes did not change is not
rewritten. Pages of this site's own folders that the folder no longer has are removed.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from harness.records.io import replace_file
from harness.records.record import Record
from harness.records.safe_fs import confined, lstat_kind, read_regular
from harness.report.frame import grouped, records_frame
from harness.report.site import claim_pages, explorer, hardware, published_page, record_page
from harness.report.site.markup import SCRIPT, STYLESHEET

PAGE_FOLDERS = ("claims", "records", "hardware")
MAX_PAGE_BYTES = 64 * 1024**2  # the explorer of a large folder; a page is compared before it is rewritten


def static(name: str) -> str:
    return resources.files(__name__).joinpath("static", name).read_text(encoding="utf-8")


def pages(records: list[Record], root: Path, out: Path, include_noisy: bool = False) -> dict[str, str]:
    """Every file of the site: its path under `out` -> its text. The records are read and migrated once, by the
    command (harness/records/folder.read_folder); every page is made from these and the frame built of them. The
    explorer and the record pages show every record as measured, its noise flags beside it; the verdicts and the
    hardware pages' figures go through the noise gate unless `include_noisy`."""
    frame = records_frame(records, root, include_noisy)
    groups = grouped(frame)
    every = records_frame(records, root, include_noisy=True)  # the explorer: each record as measured, flags shown
    by_id = {r.id: r for r in records}
    labels = dict(zip(frame["hardware"], frame["hardware_label"]))
    hw = hardware.summary(frame, groups)
    entries = claim_pages.entries(records, root, include_noisy)
    site = {
        STYLESHEET: static(STYLESHEET),
        SCRIPT: static(SCRIPT),
        "index.html": claim_pages.home(entries, hw, len(records)),
        "explorer.html": explorer.explorer(every, by_id, labels),
        "records.csv": explorer.records_csv(every),
        "hardware/index.html": hardware.hardware_index(hw, root, out),
        "published.html": published_page.published_page(),
    }
    for e in entries:
        site[e.href] = claim_pages.claim_page(e, root, out, set(by_id), labels)
    for key in hw["hardware"]:
        site[f"hardware/{key}.html"] = hardware.hardware_page(key, frame, groups, labels, root, out)
    for ident in sorted(by_id):
        site[f"records/{ident}.html"] = record_page.record_page(by_id[ident], root, out)
    return site


def write_site(records: list[Record], root: Path, out: Path, include_noisy: bool = False) -> list[Path]:
    """Write the site into `out`; returns the entry points (home, explorer, CSV) for the command to print."""
    site = pages(records, root, out, include_noisy)
    with confined(root):
        for name, text in sorted(site.items()):
            path, data = out / name, text.encode("utf-8")
            if _current(path) != data:
                replace_file(path, data)
        for folder in PAGE_FOLDERS:
            if lstat_kind(out / folder) != "directory":  # replace_file refused a planted link before this
                continue
            for stale in sorted(os.scandir(out / folder), key=lambda e: e.name):
                if stale.name.endswith(".html") and stale.is_file(follow_symlinks=False):
                    if f"{folder}/{stale.name}" not in site:
                        os.unlink(stale.path)
    return [out / "index.html", out / "explorer.html", out / "records.csv"]


def _current(path: Path) -> bytes | None:
    """What a page holds now, if it is a page: a planted FIFO or link is replaced, never read."""
    try:
        return read_regular(path, MAX_PAGE_BYTES)
    except OSError:
        return None
