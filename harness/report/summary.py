"""The readable table printed at the end of a sweep: one row per case, units in the headers."""

from __future__ import annotations

from harness.records.caveats import caveats
from harness.records.record import Record
from harness.report.frame import config_label
from harness.units import MIB, ci_text


def _case_label(rec: Record) -> str:
    """The configuration as every report names it (harness/report/frame.py), then method and checkpointing."""
    cfg = rec.config
    ckpt = "ckpt" if cfg.checkpointing.enabled else "-"
    return f"{config_label(cfg)} {cfg.method.label()} {ckpt}"


def _fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "n/a"


def _flags(r: Record) -> str:
    flags = []
    if r.noisy:
        flags.append("noisy:" + ",".join(r.noisy))
    if r.flags.get("warnings"):
        flags.append(f"warnings:{len(r.flags['warnings'])}")
    if r.checks_failed:
        flags.append("FAILED:" + ",".join(r.checks_failed))
    return " ".join(flags)


def summary_rows(records: list[dict]) -> list[list[str]]:
    """One row per record a sweep wrote (as written: error records too, so read without validation)."""
    rows = []
    for r in map(Record, records):
        if not r.ok:
            message = (r.error or {}).get("message", "").strip().splitlines()
            rows.append([r.id, _case_label(r), r.status.upper(), (message[-1] if message else "")[:60]])
            continue
        m = r.metrics
        mem = m.get("memory", {})
        lo, hi = m["compute_ratio_ci95"]
        rows.append(
            [
                r.id,
                _case_label(r),
                "ok",
                _fmt(m["time"]["fwd_train"]["median_s"] * 1e3, ".2f"),
                _fmt(m["time"]["fwd_bwd"]["median_s"] * 1e3, ".2f"),
                _fmt(m["time"]["step"]["median_s"] * 1e3, ".2f"),
                f"{m['compute_ratio']:.2f} [{ci_text(lo, hi, m.get('compute_ratio_ci_coverage'))}]",
                _fmt(m.get("flop_ratio"), ".2f"),
                _fmt(m["throughput"]["step_tokens_per_s"], ".0f"),
                _fmt(mem.get("peak_step_bytes", 0) / MIB, ".2f"),
                _fmt(mem.get("peak_infer_bytes", 0) / MIB, ".2f"),
                _fmt(mem.get("train_to_infer_memory_ratio"), ".2f"),
                f"{r.checks_passed}/{len(r.checks)}",
                _flags(r),
            ]
        )
    return rows


HEADERS = [
    "id",
    "case",
    "status",
    "fwd_train ms",
    "fwd_bwd ms",
    "step ms",
    "compute ratio [CI]",
    "FLOP ratio",
    "step tok/s",
    "peak step MiB",
    "peak infer MiB",
    "train/infer mem",
    "checks",
    "flags",
]


def format_table(records: list[dict]) -> str:
    rows = summary_rows(records)
    widths = [len(h) for h in HEADERS]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    return "\n".join(lines)


def weak_records(records: list[dict]) -> list[str]:
    """One line per record (ok or oom) whose figures are weaker than a clean measurement, with why
    (harness/records/caveats.py): what the end of a sweep says instead of "submit them"."""
    lines = []
    for record in records:
        if record.get("status") in ("ok", "oom"):
            found = caveats(record)
            if found:
                lines.append(f"{Record(record).id}  {_case_label(Record(record))}: {'; '.join(found.values())}")
    return lines
