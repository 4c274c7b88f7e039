"""The noise gate, report side (harness/report/frame.py): the timed figures of a record's noisy phases, and every
timed figure of a contended record, are left out of verdicts, tables and plots unless `--include-noisy`; memory
figures never are; each verdict counts the records it lost figures of. Checked by submitting a noisy repeat of a
committed record beside the committed folder, as `bench submit` would take it."""

from __future__ import annotations

import copy
import json
import shutil
import statistics
from pathlib import Path

import pytest

from harness import repo_root
from harness.cli import main
from harness.records import folder as results_folder
from harness.records.record import Record
from harness.records.schema import record_id
from harness.records.submit import TAKEN, submit
from harness.report import claims
from harness.report.frame import (
    CONTENDED,
    NOISY,
    TIMED,
    grouped,
    left_out_figures,
    left_out_reason,
    record_row,
    records_frame,
)

COMMITTED = repo_root() / "results" / "records"
# a quiet record (no phase flagged) that claims 1 (its compute ratio), 2, 4 and 5 (its memory) read: llama:tiny fp32
# bs2x64, full AdamW
KEPT = COMMITTED / "cpu-amd-epyc-2c" / "llama_full-adamw_ckpt-off_4616777837d1c78e_d1042b83b02a.json"
FIGURES = ("verdict", "measured", "predicted", "hardware")


def noisy_repeat(data: dict, ratio: float) -> dict:
    """The same configuration run again on a busy machine: every phase flagged, a compute ratio far off (the
    issue's 20.05 [12.14, 115.55]), a later time, so another id."""
    out = copy.deepcopy(data)
    out["flags"]["noisy"] = ["fwd_bwd", "fwd_infer", "fwd_train", "step"]
    out["metrics"]["compute_ratio"] = ratio
    out["metrics"]["compute_ratio_ci95"] = [ratio * 0.6, ratio * 5.8]
    out["provenance"]["utc_time"] = "2026-12-01T00:00:00+00:00"
    out["id"] = record_id(out["config"], out["provenance"])
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """The committed records in a folder of their own, and the same beside one noisy repeat, submitted."""
    base = tmp_path_factory.mktemp("gate")
    before, after = base / "before", base / "after"
    for root in (before, after):
        shutil.copytree(COMMITTED, root / results_folder.RECORDS)
    path = base / "noisy.json"
    path.write_text(json.dumps(noisy_repeat(json.loads(KEPT.read_text()), 20.05)))
    assert [o.status for o in submit([path], after)] == [TAKEN]
    return before, after


def judged(root: Path) -> dict[int, dict]:
    records, problems = results_folder.read_folder(root)
    assert not problems
    return {r["id"]: r for r in claims.report(claims.verdicts(records, root))}


def test_a_noisy_record_changes_no_verdict_and_is_counted_once(folders, capsys):
    before, after = folders
    old = judged(before)
    assert main(["claims", "--results", str(after), "--format", "json"]) == 0  # as a user runs it
    new = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    for claim_id, result in old.items():
        assert {f: new[claim_id][f] for f in FIGURES} == {f: result[f] for f in FIGURES}, claim_id
    # the one verdict that reads its timings counts it; those reading its memory (2, 4, 5: figures the gate keeps,
    # the same as the quiet run's) or other configurations do not
    grown = {i for i in old if new[i]["left_out"] == old[i]["left_out"] + 1}
    assert grown == {1} and all(new[i]["left_out"] == old[i]["left_out"] for i in set(old) - grown)
    # kept in (--include-noisy), the judge reads it and nothing is counted as left out
    records, _ = results_folder.read_folder(after)
    by_id = {c["id"]: v for c, v in claims.verdicts(records, after, include_noisy=True)}
    repeat = noisy_repeat(json.loads(KEPT.read_text()), 20.05)["id"]
    assert repeat in by_id[1].rows["ids"].str.cat(sep=" ").split()
    assert all(v.left_out == 0 for v in by_id.values())


def test_the_table_leaves_it_out_and_says_so(folders, tmp_path):
    before, after = folders
    records, _ = results_folder.read_folder(after)
    frame = records_frame(records, after)
    noisy = frame[frame["left_out"] != ""]
    assert len(noisy) == sum(bool(r.noisy) for r in records)  # no committed record is contended
    assert main(["table", "--results", str(after), "--out", str(tmp_path / "tables")]) == 0
    md = (tmp_path / "tables" / "v1" / "results.md").read_text()
    for hardware, count in noisy["hardware"].value_counts().items():
        assert f"`records/{hardware}/` · torch 2.13.0+cpu · timings of {count} noisy or contended record(s)" in md
    # the repeat's configuration: its timed figures over the quiet runs, its memory over every run
    kept = json.loads(KEPT.read_text())
    mine = frame[frame["id"] == kept["id"]].iloc[0]
    same = frame[(frame["measured_hash"] == mine["measured_hash"]) & (frame["hardware"] == mine["hardware"])]
    # the compute ratio is timed by fwd_train and fwd_bwd: kept from the runs where neither was flagged
    ratios = [
        r.get("metrics.compute_ratio")
        for r in records
        if r.id in set(same["id"]) and not {"fwd_train", "fwd_bwd"} & set(r.noisy)
    ]
    groups = grouped(frame)
    [row] = [r for _, r in groups.iterrows() if kept["id"] in r["ids"].split()]
    assert (row["n"], row["left_out_runs"]) == (len(same), int((same["left_out"] != "").sum())) and len(same) > 2
    assert row["compute_ratio_median"] == statistics.median(ratios) and 20.05 not in ratios
    assert (
        row["peak_step_bytes_median"] == statistics.median(same["peak_step_bytes"])
        and same["peak_step_bytes"].notna().all()
    )
    assert noisy_repeat(kept, 20.05)["id"] in row["left_out_ids"].split()
    # every report command takes the flag
    empty = tmp_path / "empty"
    for command in ("claims", "table", "plot", "site"):
        assert main([command, "--results", str(empty), "--include-noisy", "--out", str(tmp_path / command)]) in (0, 1)


def test_the_rule_per_phase_noisy_or_contended_absent_means_not():
    data = json.loads(KEPT.read_text())
    assert left_out_reason(Record.from_dict(data)) == "" and left_out_figures(Record.from_dict(data)) == ()
    assert left_out_reason(Record.from_dict(noisy_repeat(data, 3.0))) == NOISY
    # per phase: a noisy fwd_infer loses what it times, nothing else
    infer = copy.deepcopy(data)
    infer["flags"]["noisy"] = ["fwd_infer"]
    assert left_out_figures(Record.from_dict(infer)) == ("fwd_infer_s", "infer_tokens_per_s", "step_to_infer_ratio")
    row = record_row(Record.from_dict(infer), COMMITTED.parent)
    assert row["fwd_infer_s"] is None and row["step_s"] == data["metrics"]["time"]["step"]["median_s"]
    assert row["peak_infer_bytes"] == data["metrics"]["memory"]["peak_infer_bytes"]
    assert record_row(Record.from_dict(infer), COMMITTED.parent, include_noisy=True)["fwd_infer_s"] is not None
    contended = copy.deepcopy(data)
    contended["flags"]["contended"] = True
    assert left_out_reason(Record.from_dict(contended)) == CONTENDED
    assert (
        left_out_figures(Record.from_dict(contended)) == TIMED and len(TIMED) == 14
    )  # 3 fwd_infer, 5 fwd_train, 1 more fwd_bwd, 3 more step, 2 FD
    both = noisy_repeat(data, 3.0)
    both["flags"]["contended"] = True
    assert left_out_reason(Record.from_dict(both)) == f"{NOISY} {CONTENDED}"
    contended["flags"]["contended"] = False
    assert left_out_reason(Record.from_dict(contended)) == ""


def test_a_plot_caption_counts_the_records_whose_timings_it_left_out():
    from harness.report.figure import source_line

    assert "timings of" not in source_line("a CPU", "cpu-x", 10, ["2.13.0+cpu"])
    line = source_line("a CPU", "cpu-x", 10, ["2.13.0+cpu"], gated=3)
    assert "data: 10 record(s) (timings of 3 noisy or contended left out: `bench plot --include-noisy`)" in line
