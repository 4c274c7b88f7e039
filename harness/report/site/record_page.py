"""One page per record: what it measured, its figures by category (time per phase, ratios, throughput, memory,
FLOPs, …: every metric the record holds, each in its unit), predicted beside measured, the self-checks, the
provenance, the command, and the `bench cite` snippet (harness/report/cite.py) with a copy button."""

from __future__ import annotations

import json
from pathlib import Path

from harness.config.rules import PHASES, TRAINING_PHASES
from harness.records.folder import hardware_key, hardware_label
from harness.records.record import Record
from harness.records.schema import canonical_json
from harness.records.signing import signing_in_use
from harness.report.cite import cite, title, warnings
from harness.report.site.markup import cite_block, definitions, esc, link, ms, number, page, ratio, relative, sig, table
from harness.units import ci_text, format_bytes, format_flop_rate, unit_of

# The page's reading order, not the timed loop's (PHASES): inference first, then the training phases, each adding
# to the one before (forward, + backward, + optimizer step).
SHOWN_PHASES = tuple(p for p in PHASES if p not in TRAINING_PHASES) + TRAINING_PHASES


def value_html(key: str, value) -> str:
    """A metric's value in its unit, read from its name (`_bytes`, `_s`, `_per_s`, ratios), the exact figure kept
    where it is converted."""
    v = number(value)
    if isinstance(value, (dict, list)):
        return f"<code>{esc(canonical_json(value))}</code>"
    if v is None:
        return esc("—" if value is None else value)
    unit = unit_of(key)
    if unit == "B":
        return f'{esc(format_bytes(v))} <span class="exact">({int(v):,} B)</span>'
    if unit == "s":
        return f"{esc(ms(v))} ms"
    if unit == "FLOP/s":
        return f'{esc(format_flop_rate(v))} <span class="exact">({v:,.0f} FLOP/s)</span>'
    if unit is not None:  # any other rate: samples/s, tokens/s
        return f"{esc(sig(v, 4))} {esc(unit)}"
    if "ratio" in key:
        return esc(ratio(v))
    return esc(sig(v, 4) if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value)


def flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict) and value:
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def key_values(pairs: list[tuple[str, object]], caption: str) -> str:
    rows = [[f"<code>{esc(k)}</code>", value_html(k, v)] for k, v in pairs]
    return table(["Key", "Value"], rows, esc(caption))


def times(metrics: dict) -> str:
    t = metrics.get("time") or {}
    rows = [
        [
            f"<code>{p}</code>",
            ms(t[p].get("median_s")),
            ms(t[p].get("p10_s")),
            ms(t[p].get("p90_s")),
            sig(t[p].get("cv")),
            esc(t[p].get("n")),
            "yes" if t[p].get("noisy") else "no",
        ]
        for p in SHOWN_PHASES
        if isinstance(t.get(p), dict)
    ]
    if not rows:
        return ""
    return table(
        ["Phase", "Median (ms)", "p10 (ms)", "p90 (ms)", "cv", "Repeats", "Noisy"],
        rows,
        "Time per phase (metrics.time)",
        numeric={1, 2, 3, 4, 5},
    )


def comparison(predicted: dict | None) -> str:
    rows = [
        [
            f"<code>{esc(c['name'])}</code>",
            value_html(c["name"], c.get("predicted")),
            value_html(c["name"], c.get("measured")),
            "—" if number(c.get("relative_error")) is None else f"{c['relative_error'] * 100:.2f}%",
            "—" if number(c.get("tolerance")) is None else f"{c['tolerance'] * 100:g}%",
            {True: "yes", False: "no"}.get(c.get("agrees"), "—"),
        ]
        for c in (predicted or {}).get("comparison") or []
    ]
    formulas = [(k, v) for k, v in flatten((predicted or {}).get("formulas") or {})]
    out = (
        table(
            ["Quantity", "Predicted", "Measured", "Relative error", "Tolerance", "Agrees"],
            rows,
            "The analytic model against the measurement (predicted.comparison)",
        )
        if rows
        else "<p>The analytic model does not cover this case.</p>"
    )
    if formulas:
        out += definitions([(k, esc(v)) for k, v in formulas])
    return out


def checks(rec: Record) -> str:
    rows = [
        [
            f"<code>{esc(c['name'])}</code>",
            "passed" if c["passed"] else '<strong class="bad">failed</strong>',
            esc(c.get("expected")),
            esc(c.get("measured")),
            esc(c.get("detail")),
        ]
        for c in rec.checks
    ]
    return table(["Check", "Result", "Expected", "Measured", "Relation"], rows, "Self-checks (checks)")


def headline(rec: Record) -> list[tuple[str, str]]:
    m = rec.metrics
    mem = m.get("memory") or {}
    ci = m.get("compute_ratio_ci95") or [None, None]
    interval = f" ({ci_text(ci[0], ci[1], m.get('compute_ratio_ci_coverage'))})" if number(ci[0]) is not None else ""
    pairs = [("Status", esc(rec.status))]
    if rec.ok:
        pairs += [
            ("Compute ratio t(fwd+bwd) / t(fwd)", esc(ratio(m.get("compute_ratio")) + interval)),
            ("Step time (median)", f"{ms((m.get('time') or {}).get('step', {}).get('median_s'))} ms"),
            ("Step tokens/s", esc(sig((m.get("throughput") or {}).get("step_tokens_per_s"), 4))),
            ("Peak training memory", esc(format_bytes(mem.get("peak_step_bytes")))),
            ("Peak inference memory", esc(format_bytes(mem.get("peak_infer_bytes")))),
        ]
    else:
        err = rec.error or {}
        pairs.append(("Failed in", esc(f"{err.get('phase')}: {(err.get('message') or '').strip()[:300]}")))
    pairs.append(("Self-checks", f"{rec.checks_passed}/{len(rec.checks)} passed"))
    return pairs


def _signature(rec: Record, root: Path) -> list[tuple[str, str]]:
    """Who submitted it, in a folder that names its signers (harness/records/signing.py)."""
    if not signing_in_use(root):
        return []
    if rec.signer:
        return [("Submitted", f'<strong class="signed">signed by {esc(rec.signer)}</strong>')]
    return [("Submitted", '<span class="unsigned">unsigned</span>')]


def figures(m: dict) -> str:
    """Every metric the record holds, by category: time per phase, the scalar ratios, then each group."""
    sections = [("Time", times(m))]
    scalars = [(k, v) for k, v in sorted(m.items()) if not isinstance(v, dict) and k != "time"]
    if scalars:
        sections.append(("Ratios", key_values(scalars, "Ratios and other figures (metrics)")))
    for key in sorted(k for k, v in m.items() if isinstance(v, dict) and k != "time"):
        sections.append((key.replace("_", " ").capitalize(), key_values(flatten(m[key]), f"metrics.{key}")))
    return "".join(
        f'<section aria-labelledby="m-{i}"><h3 id="m-{i}">{esc(name)}</h3>{html}</section>'
        for i, (name, html) in enumerate(sections)
        if html
    )


def record_page(rec: Record, root: Path, out: Path) -> str:
    prov = rec.provenance
    hw = hardware_key(prov)
    name = title(rec)
    source = relative(rec.path, out / "records")
    warned = "".join(f"<li>{esc(w.replace('**', ''))}</li>" for w in warnings(rec))
    body = (
        f'<p class="lead">Result <code>{esc(rec.id)}</code> (config <code>{esc(rec.config_hash)}</code>) on '
        f"{link(f'../hardware/{hw}.html', hardware_label(prov))}, measured {esc(prov.get('utc_time'))}. "
        f"Record file: {link(source, rec.path.name)}.</p>\n"
        + (f'<div class="warn" role="note"><h2>Read before citing</h2><ul>{warned}</ul></div>\n' if warned else "")
        + definitions(headline(rec) + _signature(rec, root))
        + '\n<section aria-labelledby="fig-h"><h2 id="fig-h">Figures by category</h2>'
        + f"{figures(rec.metrics)}</section>\n"
        + '<section aria-labelledby="pm-h"><h2 id="pm-h">Predicted beside measured</h2>'
        + comparison(rec.predicted)
        + "</section>\n"
        + f'<section aria-labelledby="ck-h"><h2 id="ck-h">Checks and flags</h2>{checks(rec)}'
        + key_values(flatten(rec.flags), "Flags (flags)")
        + "</section>\n"
        + '<section aria-labelledby="cmd-h"><h2 id="cmd-h">Command and configuration</h2>'
        + f"<pre><code>{esc(rec.command)}</code></pre>"
        + key_values(flatten(rec.resolved), "What was derived from the configuration (resolved)")
        # the config as stored (what its hash is of), not the typed tree with an older record's defaults filled in
        + f"<details><summary>The resolved configuration (config)</summary><pre><code>"
        f"{esc(json.dumps(rec.config_dict, indent=2, sort_keys=True))}</code></pre></details></section>\n"
        + '<section aria-labelledby="prov-h"><h2 id="prov-h">Provenance</h2>'
        + key_values(flatten(prov), "Provenance (provenance)")
        + "</section>\n"
        + cite_block("Cite this result", cite(rec, root), "cite", "The snippet <code>bench cite</code> prints.")
    )
    return page(f"Record {rec.id[:8]}: {name}", body, 1, f"{name} on {hardware_label(prov)}")
