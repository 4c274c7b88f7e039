"""published.html: bench estimate's test set, the published GPU measurements of harness/predict/published.json beside
the analytic model's prediction, with the error per row and the median. The site is built without torch: a row whose
activations only a trace gives (no closed form) reads the trace recorded in harness/predict/published_traced.json
(tests/test_published.py holds it to what the code traces). Nothing on the page comes from the results folder: it
depends on the code alone."""

from __future__ import annotations

import functools

from harness.predict.published import evaluate, recorded, recorded_replay
from harness.report.estimate_table import published_rows, published_summary
from harness.report.site.markup import esc, page, table

HEADERS = ["Row", "Setup", "Quantity", "Published", "Predicted", "Error", "Allocated alone", "Note"]
TRACED_ONLY = "no recorded trace: bench estimate --published traces it (imports torch; bench site does not)"


@functools.cache  # the page depends on the code alone: composing its 14 setups once a process is enough
def published_page() -> str:
    result = evaluate(fallback=recorded, reserve=recorded_replay)
    cells = []
    for row, text in zip(result["rows"], published_rows(result)):
        note = text["note"]
        if row["predicted_bytes"] is None and note.startswith("no figure"):
            note = f"{TRACED_ONLY}: {note}"
        source = f"{row['source']}; differs: {'; '.join(row['differs'])}"
        cells.append(
            [
                f"<span title='{esc(source)}'>{esc(row['id'])}</span>",
                esc(row["setup"]),
                esc(row["quantity"]),
                esc(text["published"]),
                esc(text["predicted"]),
                esc(text["error"]),
                esc(text["allocated_error"]),
                esc(note),
            ]
        )
    quantities = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in result["quantities"].items())
    overheads = "".join(
        f"<li><b>{esc(k)}</b>: {o['bytes']:,} bytes, from {esc(o['source'])}</li>"
        for k, o in result["overheads"].items()
    )
    body = (
        "<p>Memory measured on GPUs by others, each row's setup expressed as <code>bench estimate</code> overrides "
        "and predicted by the analytic model; error = predicted / published − 1. Every figure here is reserved "
        "memory, so the prediction is the caching allocator's reserve, its rules replayed over the run's "
        "allocations, where the run can be replayed; elsewhere it is the allocated figure, and the note says why. "
        "The allocated figure's own error stands beside it. Nothing in the model is fitted to these rows. Rows the "
        "harness cannot express yet say why.</p>\n"
        f"<p><strong>{esc(published_summary(result))}</strong> (traced rows as recorded by "
        "<code>bench estimate --published --save-traces</code>, with their replays).</p>\n"
        + table(
            HEADERS, cells, caption="Published measurements against the prediction", numeric={3, 4, 5, 6}, stack=True
        )
        + f"\n<h2>Quantities</h2>\n<ul>{quantities}</ul>\n<h2>What a prediction adds</h2>\n<ul>{overheads}</ul>"
    )
    return page("Published measurements", body, 0, "bench estimate against published GPU memory figures")
