"""The explorer: every record as one row, rendered into the page (no data file is fetched: browsers refuse
fetch() from file://), with a labelled filter control per column and a sort button per header; site.js hides
and orders rows in place. Each cell's data-v holds the exact value filters and sorts read. Without JavaScript
every row is shown. The same rows, every column of harness/report/frame.py in base units, are records.csv."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from harness.records.record import Record
from harness.report.escape import csv_text
from harness.report.frame import config_label
from harness.report.site.markup import attrs, esc, gib, link, ms, page, sig, sort_key
from harness.units import ci_text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str  # "choice": a <select> of the values present; "number": >x, <x, a..b or text; "text": contains
    value: Callable[[pd.Series, Record], object]  # what filters and sorts read
    shown: Callable[[pd.Series, Record], str] | None = None  # the cell's HTML, from the value when None


def _checks(rec: Record) -> str:
    return f"{rec.checks_passed}/{len(rec.checks)}"


def flags(row: pd.Series, rec: Record) -> str:
    """What weakens a number, in words: out of memory, failed checks, noisy phases, disagreement with the
    analytic model, a modified tree, software other than the lock's."""
    out = ["out of memory" + (f" ({row['oom_phase']})" if row["oom_phase"] else "")] if rec.status == "oom" else []
    out += [f"check failed: {name}" for name in rec.checks_failed]
    out += [f"noisy: {', '.join(rec.noisy)}"] if rec.noisy else []
    out += [f"predicted disagrees: {row['predicted_disagrees']}"] if row["predicted_disagrees"] else []
    out += ["modified tree"] if row["git_dirty"] else []
    out += [f"environment {row['environment']}"] if row["environment"] not in ("lock", "not recorded") else []
    return "; ".join(out)


def _ratio_ci(row: pd.Series, rec: Record) -> str:
    if pd.isna(row["compute_ratio"]):
        return "—"
    lo, hi = row["compute_ratio_ci95_lo"], row["compute_ratio_ci95_hi"]
    interval = ci_text(lo, hi, rec.metrics.get("compute_ratio_ci_coverage"))
    ci = f' <span class="ci">[{esc(interval)}]</span>' if pd.notna(lo) and pd.notna(hi) else ""
    return f"{row['compute_ratio']:.2f}×{ci}"


# The figures a reader comes for (compute ratio, time, memory) right after what the row is (model, method), so
# that they are in view at 1280 px; the hardware, the same on most rows, last.
COLUMNS = [
    Column("model", "Model", "choice", lambda r, s: config_label(s.config).split(" ")[0]),
    Column("method", "Method", "choice", lambda r, s: r["method"]),
    Column("compute_ratio", "Compute ratio [CI]", "number", lambda r, s: r["compute_ratio"], _ratio_ci),
    Column("step_ms", "Step time (ms)", "number", lambda r, s: r["step_s"], lambda r, s: ms(r["step_s"])),
    Column(
        "peak_train",
        "Peak training (GiB)",
        "number",
        lambda r, s: r["peak_step_bytes"],
        lambda r, s: gib(r["peak_step_bytes"]),
    ),
    Column(
        "peak_infer",
        "Peak inference (GiB)",
        "number",
        lambda r, s: r["peak_infer_bytes"],
        lambda r, s: gib(r["peak_infer_bytes"]),
    ),
    Column(
        "tokens",
        "Step tokens/s",
        "number",
        lambda r, s: r["step_tokens_per_s"],
        lambda r, s: sig(r["step_tokens_per_s"]),
    ),
    Column("precision", "Precision", "choice", lambda r, s: r["precision"]),
    Column("checkpointing", "Checkpointing", "choice", lambda r, s: "on" if r["checkpointing"] else "off"),
    Column("batch", "Batch", "choice", lambda r, s: int(r["batch_size"])),
    Column("seq", "Sequence length", "choice", lambda r, s: int(r["seq_len"])),
    Column("status", "Status", "choice", lambda r, s: r["status"]),
    Column("checks", "Checks passed", "choice", lambda r, s: _checks(s)),
    Column("flags", "Flags", "text", flags),
    Column("hardware", "Hardware", "choice", lambda r, s: r["hardware"], lambda r, s: esc(r["hardware_label"])),
]
# Filters and sorts read bytes and seconds as GiB and ms, the units the cells show.
SCALE = {"step_ms": 1e3, "peak_train": 1 / 1024**3, "peak_infer": 1 / 1024**3}


def _value(column: Column, row: pd.Series, rec: Record):
    value = column.value(row, rec)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value * SCALE[column.key] if column.key in SCALE else value


def _choice_order(values: set) -> list:
    return sorted(values, key=lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))


def _controls(values: dict[str, set], labels: dict[str, str]) -> str:
    out = []
    for i, c in enumerate(COLUMNS):
        ident = f"f-{c.key}"
        data = attrs(id=ident, name=c.key, data_col=str(i + 1), data_kind=c.kind)
        if c.kind == "choice":
            options = "".join(
                f'<option value="{esc(sort_key(v))}">{esc(labels.get(v, v) if c.key == "hardware" else v)}</option>'
                for v in _choice_order(values[c.key])
            )
            control = f'<select{data}><option value="">all</option>{options}</select>'
        else:
            hint = "e.g. >2.5, <=1, 2..3" if c.kind == "number" else "words it contains"
            control = f'<input type="text"{data} placeholder="{hint}" autocomplete="off">'
        out.append(f'<div class="filter"><label for="{ident}">{esc(c.header)}</label>{control}</div>')
    return "".join(out)


def explorer(frame: pd.DataFrame, by_id: dict[str, Record], labels: dict[str, str]) -> str:
    values: dict[str, set] = {c.key: set() for c in COLUMNS}
    body = []
    for _, row in frame.iterrows():
        rec = by_id[row["id"]]
        ident = row["id"]
        cells = [f'<td data-v="{esc(ident)}">{link(f"records/{ident}.html", ident[:8])}</td>']
        for c in COLUMNS:
            value = _value(c, row, rec)
            if value is not None and c.kind == "choice":
                values[c.key].add(value)
            shown = c.shown(row, rec) if c.shown else esc("—" if value is None else value)
            num = ' class="num"' if c.kind == "number" else ""
            cells.append(f'<td data-v="{esc(sort_key(value))}"{num}>{shown}</td>')
        body.append(f'<tr data-status="{esc(row["status"])}">' + "".join(cells) + "</tr>")
    headers = ["Record"] + [c.header for c in COLUMNS]
    head = "".join(
        f'<th scope="col"{attrs(class_="num" if i and COLUMNS[i - 1].kind == "number" else None)}>'
        f'<button type="button" class="sort" data-col="{i}">{esc(h)}<span class="arrow" aria-hidden="true"></span>'
        "</button></th>"
        for i, h in enumerate(headers)
    )
    total = len(frame)
    page_body = (
        f"<p>Every record in the results folder, one row each ({total}). Filter with the controls (a number "
        "column takes <code>&gt;2.5</code>, <code>&lt;=1</code>, a range <code>2..3</code>, or text), sort with a "
        "column's button, follow a record to its page. The filters are kept in the address (<code>#method=lora"
        f"</code>), so a filtered view can be linked. Download: {link('records.csv', 'records.csv')} (every column "
        "of the record frame, base units: bytes, seconds).</p>\n"
        '<form id="filters" class="filters" role="search" aria-label="Filter the records"><fieldset><legend>Filters'
        "</legend>" + _controls(values, labels) + '<div class="filter actions"><button type="reset">Show all</button>'
        "</div></fieldset></form>\n"
        f'<p id="shown" role="status" aria-live="polite" data-total="{total}">{total} of {total} records shown</p>\n'
        '<div class="scroll" tabindex="0" role="region" aria-label="Records">'
        f'<table id="records" class="explorer"><caption>Records (sortable: each header is a button)</caption>'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )
    return page("Explorer: every record", page_body, 0, "Every benchmark record, filterable and sortable")


def records_csv(frame: pd.DataFrame) -> str:
    """The explorer's rows, every column of the record frame, in base units (bytes, seconds)."""
    return csv_text(frame)
