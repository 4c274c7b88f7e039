"""The home page (every claim's verdict at a glance, the hardware covered) and one page per claim: the seed's
words, the verdict and its condition, measured beside predicted, the plots that show it, every configuration
that fed it, and a "cite this" block. Verdicts come from the judges of `bench claims` (harness/report/claims.py),
read from the same grouped frame, and carry the rows they read: the configurations a page lists are the judge's,
nothing is judged or selected here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.records.folder import PLOTS
from harness.records.record import Record
from harness.report import claims
from harness.report.figure_pages import figure_pages
from harness.report.frame import memory_unit
from harness.report.site.markup import cite_block, definitions, esc, figure, link, page, ratio, sig, table
from harness.report.verdict import NO_GPU_VERDICT, Verdict, no_gpu_verdict

# The plots of `bench plot` that show a claim, by judge kind (or by the metric a range/pair judge reads).
PLOTS_SHOWING = {
    "compute_ratio": ["compute_ratio"],
    "train_to_infer_memory_ratio": ["memory_by_category"],
    "optimizer_bytes": ["memory_by_category", "predicted_vs_measured"],
    "checkpointing": ["checkpointing_tradeoff"],
    "linear_in_depth": ["activations_vs_depth"],
    "attention": ["activations_vs_seq_len"],
    "precision": ["memory_by_category"],
    "adam_7b": ["predicted_vs_measured"],
    "llama8b_lora": ["memory_by_category"],
    "sharding": ["memory_by_category"],
}
READ = "the configurations the judge reads"
ANALYTIC = "analytic: computed from the model's shapes, no measured configuration feeds it"


def plots_of(judge: dict) -> list[str]:
    return PLOTS_SHOWING.get(judge["kind"]) or PLOTS_SHOWING.get(judge.get("metric", ""), [])


@dataclass
class Entry:
    """One claim of suites/claims.yaml with its verdict, which carries the grouped rows that fed it."""

    claim: dict
    verdict: Verdict

    @property
    def href(self) -> str:
        return f"claims/{self.claim['id']}.html"

    @property
    def rows(self) -> pd.DataFrame:
        """The rows the judge read (none for an analytic claim)."""
        return self.verdict.rows if self.verdict.rows is not None else pd.DataFrame(columns=["hardware"])

    @property
    def note(self) -> str:
        return ANALYTIC if self.verdict.rows is None else READ


def entries(
    records: list[Record], root: Path, include_noisy: bool = False, registry: list[dict] | None = None
) -> list[Entry]:
    """Every claim judged on the folder's records, each verdict counting the records the noise gate left figures
    of out (harness/report/claims.verdicts)."""
    return [Entry(claim, verdict) for claim, verdict in claims.verdicts(records, root, include_noisy, registry)]


def verdict_class(v: Verdict) -> str:
    """The badge's colour, from what was judged: a claim about GPUs measured on CPUs alone is not coloured as
    found."""
    judged = v.judged
    if not judged or v.subject_unmeasured:
        return "none"
    return "holds" if all(judged) else "fails" if not any(judged) else "conditional"


def verdict_badge(v: Verdict, short: bool = True) -> str:
    """The verdict in words (never colour alone), with how many of its judged parts held."""
    judged = v.judged
    counted = f" ({sum(judged)} of {len(judged)} parts)" if len(judged) > 1 else ""
    text = v.short if short else v.words
    return f'<span class="verdict {verdict_class(v)}">{esc(text)}</span>{esc(counted)}'


def items(text: str) -> list[str]:
    """A judge's "a; b; c" as its items ("; " inside parentheses belongs to the item)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text.startswith("; ", i):
            out.append(text[start:i])
            start = i + 2
    out.append(text[start:])
    return [s.strip() for s in out if s.strip() and s.strip() != "—"]


def finding(v: Verdict, limit: int = 160) -> str:
    """One line for the home table: the first measured figure (and how many more), else the prediction."""
    found = items(v.measured) or [f"predicted: {p}" for p in items(v.predicted)] or ["nothing measured yet"]
    first = found[0] if len(found[0]) <= limit else found[0][: limit - 1].rstrip() + "…"
    return first + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")


def home(entries_: list[Entry], hardware: pd.DataFrame, records: int) -> str:
    gpu_note = (
        f'<p class="lead" id="no-gpu-verdict">{esc(NO_GPU_VERDICT)}</p>\n'
        if no_gpu_verdict([e.verdict for e in entries_])
        else ""
    )
    rows = [
        [
            link(e.href, f"Claim {e.claim['id']}"),
            esc(e.claim["statement"]),
            verdict_badge(e.verdict),
            esc(finding(e.verdict)),
            esc(e.verdict.hardware),
        ]
        for e in entries_
    ]
    hw_rows = [
        [
            link(f"hardware/{h['hardware']}.html", h["hardware_label"]),
            esc(h["device_type"]),
            str(h["records"]),
            str(h["configurations"]),
        ]
        for _, h in hardware.iterrows()
    ]
    body = (
        "<p>What does backpropagation cost? Each claim of the seed documents (<code>suites/claims.yaml</code>) is "
        f"judged by <code>bench claims</code> against the {records} records in this results folder and the analytic "
        "model. Follow a claim to its measurements, the prediction, the hardware and the commands that reproduce it; "
        f"browse every record in the {link('explorer.html', 'explorer')} or download them as "
        f"{link('records.csv', 'CSV')}. Timings of noisy phases and of contended runs are left out "
        "of the verdicts (results/README.md, “The noise gate”); each claim's page says how many records lost figures."
        "</p>\n"
        + gpu_note
        + '<section aria-labelledby="claims-h"><h2 id="claims-h">Claims and verdicts</h2>'
        + table(
            ["Claim", "The seed's words", "Verdict", "Finding", "Judged on"],
            rows,
            "Every seed claim, judged",
            stack=True,
        )
        + '</section>\n<section aria-labelledby="hw-h"><h2 id="hw-h">Hardware covered</h2>'
        + table(
            ["Hardware", "Device", "Records", "Configurations"],
            hw_rows,
            "Where the records were measured",
            numeric={2, 3},
        )
        + "</section>"
    )
    return page("Backpropagation, measured: the claims", body, 0, "Claims about the cost of backpropagation, judged")


def metric_cells(rows: pd.DataFrame, metric: str) -> tuple[str, list[str], list[str]]:
    """(header, measured cells, predicted cells) for one metric column of the grouped rows, in its unit."""
    med, pred = rows.get(f"{metric}_median"), rows.get(f"predicted_{metric}_median")
    if metric.endswith("_bytes"):
        unit, name = memory_unit(pd.concat([med, pred]) if pred is not None else med)
        fmt, header = (lambda v: sig(v / unit) if pd.notna(v) else "—"), f"{metric} ({name})"
    elif metric.endswith("_s"):
        fmt, header = (lambda v: sig(v * 1e3) if pd.notna(v) else "—"), f"{metric[:-2]} (ms)"
    elif "ratio" in metric:
        fmt, header = ratio, metric
    else:
        fmt, header = sig, metric
    measured = [fmt(v) for v in med] if med is not None else ["—"] * len(rows)
    predicted = [fmt(v) for v in pred] if pred is not None else []
    return header, measured, predicted


def configurations(e: Entry, record_pages: set[str]) -> str:
    rows = e.rows
    if rows.empty:
        return f"<p>No measured configuration feeds this verdict ({esc(e.note)}).</p>"
    headers = ["Hardware", "Configuration", "Method", "Checkpointing", "Runs ok / out of memory"]
    columns: list[list[str]] = []
    for metric in claims.reads(e.claim):
        header, measured, predicted = metric_cells(rows, metric)
        headers.append(f"{esc(header)}, measured (median)")
        columns.append(measured)
        if predicted:
            headers.append(f"{esc(header)}, predicted")
            columns.append(predicted)
    headers.append("Records")
    body = []
    for i, (_, r) in enumerate(rows.iterrows()):
        ids = [link(f"../records/{x}.html", x[:8]) for x in str(r["ids"]).split() if x in record_pages]
        body.append(
            [
                link(f"../hardware/{r['hardware']}.html", r["hardware_label"]),
                esc(r["config"]),
                esc(r["method"]),
                "on" if r["checkpointing"] else "off",
                f"{int(r['n'])} / {int(r['n_oom'])}",
                *(col[i] for col in columns),
                " ".join(ids),
            ]
        )
    numeric = set(range(4, 5 + len(columns)))
    return table(headers, body, f"{len(rows)} configuration(s): {esc(e.note)}", numeric=numeric)


def own_card(v: Verdict) -> str:
    """For a claim about a named model's memory: the measurement beside what `bench estimate` prints for the same
    setup, and the commands that answer it for one's own card."""
    if not v.beside and not v.commands:
        return ""
    rows = [[esc(what), esc(measured), esc(estimated)] for what, measured, estimated in v.beside]
    commands = "".join(f"<pre><code>{esc(c)}</code></pre>" for c in v.commands)
    return (
        '<section aria-labelledby="own-h"><h2 id="own-h">Estimated beside measured, and on your own card</h2>'
        + (table(["Figure", "Measured", "bench estimate"], rows, "The estimate beside the measurement") if rows else "")
        + "<p><code>bench estimate</code> answers from the analytic model in a second, without a GPU; "
        "<code>bench fit</code> measures on the card (the last form: as if it had 24 GB).</p>"
        + commands
        + "</section>\n"
    )


def cite_text(e: Entry) -> str:
    c, v = e.claim, e.verdict
    command = claims.commands(c)
    lines = [
        f"**backprop-bench claim {c['id']}** — “{c['statement']}” (seed: {c['seed']})",
        "",
        f"- Verdict: **{v.words}** — judged: {c['condition']}",
        f"- Measured: {v.measured}",
        f"- Predicted (analytic model): {v.predicted or '—'}",
        f"- Hardware: {v.hardware}",
        "",
        f"Judged by `bench claims` from {len(e.rows)} configuration(s) in the results folder ({v.left_out} record(s) "
        "left out by the noise gate); registry `suites/claims.yaml`. Reproduce:",
        "",
        "```sh",
        *(part for step in command.split(" ; ") for part in step.split(" · ")),
        "```",
    ]
    return "\n".join(lines)


def claim_page(e: Entry, root: Path, out: Path, record_pages: set[str], labels: dict[str, str]) -> str:
    c, v = e.claim, e.verdict
    page_dir = out / "claims"
    plots = [
        figure(path, page_dir, labels.get(hw))
        for hw in sorted(set(e.rows["hardware"]) if len(e.rows) else ())
        for stem in plots_of(c["judge"])
        for path in figure_pages(root / PLOTS / hw, stem)
    ]
    judged = [
        [esc(label), "—" if ok is None else ("holds" if ok else "does not hold")] for label, ok in e.verdict.parts
    ]
    body = (
        f'<p class="lead">{verdict_badge(v, short=False)}</p>\n'
        + definitions(
            [
                ("The seed's words", f"<q>{esc(c['statement'])}</q>"),
                ("Source (seed documents)", f"<code>{esc(c['seed'])}</code>"),
                ("Quantity", esc(c["quantity"])),
                ("Condition", esc(c["condition"])),
                ("Judged on", esc(v.hardware)),
                (
                    "Records left out",
                    f"{v.left_out}: records whose timings it reads were noisy or contended (results/README.md, "
                    "“The noise gate”; <code>bench site --include-noisy</code> keeps them)",
                ),
                (
                    "Suites that measure it",
                    ", ".join(f"<code>{esc(s)}</code>" for s in c.get("suite") or []) or "none: analytic",
                ),
                ("Published references", esc(c["references"])),
            ]
        )
        + '\n<section aria-labelledby="mp-h"><h2 id="mp-h">Measured beside predicted</h2>'
        + table(
            ["Measured", "Predicted (analytic model)"],
            [[_list(items(v.measured)), _list(items(v.predicted))]],
            "The judge's figures",
        )
        + (table(["Judged part", "Result"], judged, "What the verdict was made from") if judged else "")
        + "</section>\n"
        + own_card(v)
        + (
            '<section aria-labelledby="plots-h"><h2 id="plots-h">Plots</h2>' + "".join(plots) + "</section>\n"
            if plots
            else ""
        )
        + '<section aria-labelledby="cfg-h"><h2 id="cfg-h">Configurations that fed it</h2>'
        + configurations(e, record_pages)
        + "</section>\n"
        + cite_block(
            "Cite this claim",
            cite_text(e),
            "cite",
            "Markdown for an article; each record's page has the <code>bench cite</code> snippet of that record.",
        )
    )
    return page(f"Claim {c['id']}: {_title(c['statement'])}", body, 1, c["statement"])


def _list(values: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in values) + "</ul>" if values else "—"


def _title(statement: str, limit: int = 100) -> str:
    text = statement.strip().strip('"“”')
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
