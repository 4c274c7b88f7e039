"""The unit rule (harness/units.py): a metric's unit is read from its name, the longest ending first, so that a
rate is never written in a time unit on a record page (a FLOP rate once read `712,421,105,683 ms`)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.records.folder import read_folder
from harness.report.site.record_page import flatten, value_html
from harness.units import format_flop_rate, unit_of

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_unit_of_reads_the_longest_ending():
    assert unit_of("fwd_bwd_flop_per_s") == "FLOP/s"
    assert unit_of("step_tokens_per_s") == "tokens/s"
    assert unit_of("median_s") == "s"
    assert unit_of("peak_allocated_bytes") == "B"
    assert unit_of("compute_ratio") is None


def test_flop_rate_in_tflops_and_gflops():
    assert format_flop_rate(712_421_105_683) == "0.712 TFLOP/s"
    assert format_flop_rate(2.5e9) == "2.5 GFLOP/s"


def test_a_record_page_never_writes_a_rate_in_a_time_unit():
    """Every metric of every committed record, as its page writes it: rates in FLOP/s, samples/s or tokens/s,
    times in ms (the seconds x 1000), never the one for the other."""
    records, _ = read_folder(RESULTS)
    assert records, "the committed results folder holds records"
    seen = {"rate": 0, "time": 0}
    for rec in records:
        for key, value in flatten(rec.data.get("metrics") or {}):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            text = value_html(key, value)
            if key.endswith("_per_s"):
                seen["rate"] += 1
                assert " ms" not in text and re.search(r"(FLOP|samples|tokens)?/s", text), (key, text)
            elif key.endswith("_s"):
                seen["time"] += 1
                assert text.endswith(" ms"), (key, text)
    assert seen["rate"] > 0 and seen["time"] > 0, seen


def test_cite_summary_and_site_name_the_same_confidence_level():
    """One record's compute-ratio interval reads the same, level included, in `bench cite`, the end-of-run
    summary and the record page; a record of 5 repeats says 93.8% (1 - 2/2^5), not 95%."""
    from harness.report.cite import cite
    from harness.report.site.record_page import headline
    from harness.report.summary import summary_rows
    from harness.units import ci_text

    records, _ = read_folder(RESULTS)
    rec = next(r for r in records if r.ok and (r.metrics.get("compute_ratio_ci_coverage") or 0) > 0)
    lo, hi = rec.metrics["compute_ratio_ci95"]
    cov = rec.metrics["compute_ratio_ci_coverage"]
    expected = ci_text(lo, hi, cov)
    assert expected == f"{lo:.2f}–{hi:.2f}, {cov * 100:.1f}% CI"
    assert expected in cite(rec, RESULTS)
    assert any(expected in cell for row in summary_rows([rec.data]) for cell in row)
    assert any(expected in value for _, value in headline(rec))
    assert ci_text(1.0, 2.0, 1 - 2 / 2**5).endswith("93.8% CI")
