"""The shared results folder: submit refuses every kind of bad file and leaves the folder untouched, concurrent
submits all land, tables keep the numbers exactly, plots regenerate byte for byte, cite says what it cites."""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.records import folder as results_folder
from harness.records.io import record_bytes, write_record
from harness.records.record import Record
from harness.records.schema import record_id
from harness.records.submit import DUPLICATE, REFUSED, TAKEN, submit
from harness.records.validate import MAX_RECORD_BYTES
from harness.report.cite import cite
from harness.report.plots import write_plots
from harness.report.tables import write_tables


def restamp(record: dict, utc_time: str) -> dict:
    """The same configuration measured at another time: a distinct, valid record (id recomputed)."""
    r = copy.deepcopy(record)
    r["provenance"]["utc_time"] = utc_time
    r["id"] = record_id(r["config"], r["provenance"])
    return r


def snapshot(root: Path) -> dict:
    """Every file under the folder with its bytes: what 'byte-for-byte unchanged' compares."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_record_survives_write_submit_table_unchanged(real_records, tmp_path):
    record = real_records[0]
    written = write_record(record, tmp_path / "run")
    root = tmp_path / "results"
    [outcome] = submit([tmp_path / "run"], root)
    assert outcome.status == TAKEN
    assert json.loads(outcome.dest.read_bytes()) == record  # stored content is the record, unchanged
    assert outcome.dest.parent.name == results_folder.hardware_key(record["provenance"])
    assert outcome.dest.name.endswith(f"_{record['id']}_{results_folder.content_sha(written.read_bytes())[:12]}.json")

    stored, problems = results_folder.read_folder(root)
    assert problems == [] and [r.to_dict() for r in stored] == [record] and stored[0].path == outcome.dest
    paths = write_tables(stored, root, root / "tables", include_noisy=True)  # measured here: noisy by chance
    assert [p.relative_to(root).as_posix() for p in paths] == ["tables/v1/results.csv", "tables/v1/results.md"]
    [row] = pd.read_csv(paths[0]).to_dict("records")
    m = record["metrics"]
    # CSV keeps full precision: the table reads back exactly what was measured
    assert row["compute_ratio_median"] == m["compute_ratio"] == row["compute_ratio_min"] == row["compute_ratio_max"]
    assert row["fwd_bwd_s_median"] == m["time"]["fwd_bwd"]["median_s"]
    assert row["peak_step_bytes_median"] == m["memory"]["peak_step_bytes"]
    assert row["grads_bytes_median"] == m["memory"]["grads_bytes"]
    assert row["n"] == 1 and row["n_oom"] == 0 and row["ids"] == record["id"]
    assert math.isnan(row["compute_ratio_trimmed_mean"])  # one repeat: no trimmed mean


def _bad_files(record: dict, tmp: Path) -> dict[str, tuple[Path, str]]:
    """kind -> (file, the field its refusal must name)"""
    good = record_bytes(record).decode()
    files = {}

    def put(name, text, field):
        path = tmp / f"{name}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        files[name] = (path, field)

    put("truncated", good[: len(good) // 2], "file")
    nan = copy.deepcopy(record)
    put("nan", json.dumps(nan).replace(json.dumps(nan["metrics"]["compute_ratio"]), "NaN", 1), "file")
    negative = copy.deepcopy(record)
    negative["metrics"]["memory"]["grads_bytes"] = -4096
    put("negative_bytes", json.dumps(negative), "metrics.memory.grads_bytes")
    negative_time = copy.deepcopy(record)
    negative_time["metrics"]["time"]["step"]["median_s"] = -0.5
    put("negative_time", json.dumps(negative_time), "metrics.time.step.median_s")
    newer = dict(copy.deepcopy(record), schema_version="9.0")
    put("newer_schema", json.dumps(newer), "schema_version")
    unknown = dict(copy.deepcopy(record), schema_version="0.3")
    put("unknown_schema", json.dumps(unknown), "schema_version")
    no_prov = copy.deepcopy(record)
    del no_prov["provenance"]
    put("missing_provenance", json.dumps(no_prov), "provenance")
    no_gitsha = copy.deepcopy(record)
    del no_gitsha["provenance"]["git_sha"]
    put("missing_git_sha", json.dumps(no_gitsha), "provenance.git_sha")
    wrong_id = dict(copy.deepcopy(record), id="0123456789abcdef")
    put("wrong_id", json.dumps(wrong_id), "id")
    edited_config = copy.deepcopy(record)
    edited_config["config"]["workload"]["batch_size"] = 64  # the numbers no longer belong to this config
    put("edited_config", json.dumps(edited_config), "config_hash")
    put("oversized", good.rstrip() + " " * MAX_RECORD_BYTES, "file")
    put("pickle", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00.", "file")
    put("not_an_object", "[1, 2, 3]", "file")
    error = dict(copy.deepcopy(record), status="error")
    put("error_status", json.dumps(error), "status")
    return files


def test_each_kind_of_bad_file_is_refused_and_the_folder_stays_byte_for_byte(real_records, tmp_path, capsys):
    root = tmp_path / "results"
    good = write_record(real_records[0], tmp_path / "good")
    assert [o.status for o in submit([good], root)] == [TAKEN]
    before = snapshot(root)
    assert ".lock" in before and len(before) == 2

    (tmp_path / "bad").mkdir()
    bad = _bad_files(real_records[1], tmp_path / "bad")
    for kind, (path, field) in bad.items():
        [outcome] = submit([path], root)
        assert outcome.status == REFUSED, kind
        assert outcome.reason.startswith(f"{field}:"), (kind, outcome.reason)
        assert str(path) in outcome.line()
        assert snapshot(root) == before, kind

    [dup] = submit([good], root)  # the same content again
    assert dup.status == DUPLICATE and str(dup.dest) in dup.line()
    assert snapshot(root) == before

    # the command line: one line per refusal naming file and field, exit 1, everything else still taken
    other = write_record(real_records[2], tmp_path / "other")
    code = main(["submit", str(bad["negative_bytes"][0]), str(other), "--to", str(root)])
    out = capsys.readouterr()
    assert code == 1
    assert f"refused   {bad['negative_bytes'][0]}: metrics.memory.grads_bytes: -4096 bytes is negative" in out.err
    assert "1 taken, 0 duplicate, 1 refused" in out.out
    assert len(snapshot(root)) == 3
    # newer schema: the message says which harness reads it
    [newer] = submit([bad["newer_schema"][0]], root)
    assert "newer than this harness reads" in newer.reason
    assert f"written by backprop-bench {real_records[1]['provenance']['harness_version']}" in newer.reason


def test_an_id_stored_with_other_content_is_refused(real_records, tmp_path):
    root = tmp_path / "results"
    submit([write_record(real_records[0], tmp_path / "a")], root)
    before = snapshot(root)
    edited = copy.deepcopy(real_records[0])
    edited["metrics"]["compute_ratio"] = 1.0  # same id (metrics are not in it), different content
    path = tmp_path / "edited.json"
    path.write_bytes(record_bytes(edited))
    [outcome] = submit([path], root)
    assert outcome.status == REFUSED and outcome.reason.startswith("id:") and "already stored" in outcome.reason
    assert snapshot(root) == before


def test_a_record_edited_in_the_folder_is_reported_not_read(real_records, tmp_path, capsys):
    root = tmp_path / "results"
    [a, b] = submit([write_record(r, tmp_path / "run") for r in real_records[:2]], root)
    text = a.dest.read_text().replace(json.dumps(real_records[0]["metrics"]["compute_ratio"]), "1.5", 1)
    os.chmod(a.dest, 0o644)
    a.dest.write_text(text)
    stored, problems = results_folder.read_folder(root)
    assert [s.path for s in stored] == [b.dest]
    assert [p.path for p in problems] == [a.dest] and "edited after submission" in problems[0].reason
    assert main(["table", "--results", str(root)]) == 1  # tables still written from the good record
    assert f"skipped {a.dest}" in capsys.readouterr().err
    assert pd.read_csv(root / "tables/v1/results.csv")["ids"].tolist() == [real_records[1]["id"]]


@pytest.mark.slow
def test_concurrent_submits_from_several_processes_all_land(real_records, tmp_path):
    root = tmp_path / "results"
    shared = write_record(real_records[3], tmp_path / "shared")  # every process also submits this one
    batches = []
    for p in range(4):
        directory = tmp_path / f"user{p}"
        for i in range(6):
            write_record(restamp(real_records[i % 4], f"2026-01-0{p + 1}T00:00:{i:02d}+00:00"), directory)
        batches.append(directory)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "submit", str(d), str(shared), "--to", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in batches
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    stored, problems = results_folder.read_folder(root)
    assert problems == []  # every stored file is whole: its sha matches its name, and it validates
    assert len(stored) == 4 * 6 + 1
    assert sum(out.count("taken ") for out, _ in outputs) == 25
    assert sum(out.count("duplicate ") for out, _ in outputs) == 3
    assert not list(root.rglob(".tmp-*"))


def test_table_groups_repeats_with_median_min_max_and_trimmed_mean(real_records, tmp_path):
    ratios = [2.0, 2.4, 3.2, 2.2, 9.0, 2.6]  # 9.0: one bad run, which the trimmed mean drops
    root = tmp_path / "results"
    for i, ratio in enumerate(ratios):
        r = restamp(real_records[0], f"2026-02-01T00:00:{i:02d}+00:00")
        r["metrics"]["compute_ratio"] = ratio
        r["metrics"]["memory"]["peak_step_bytes"] = 1000 * (i + 1)
        submit([write_record(r, tmp_path / "runs")], root)
    submit([write_record(real_records[1], tmp_path / "other")], root)  # another configuration: its own row
    stored, _ = results_folder.read_folder(root)
    csv_path, md_path = write_tables(stored, root, root / "tables", include_noisy=True)
    table = pd.read_csv(csv_path)
    assert len(table) == 2
    row = table[table["config_hash"] == real_records[0]["config_hash"]].iloc[0]
    assert row["n"] == 6
    assert row["compute_ratio_median"] == pytest.approx((2.4 + 2.6) / 2)
    assert row["compute_ratio_min"] == 2.0 and row["compute_ratio_max"] == 9.0
    assert row["compute_ratio_trimmed_mean"] == pytest.approx((2.2 + 2.4 + 2.6 + 3.2) / 4)
    assert row["peak_step_bytes_median"] == 3500 and row["peak_step_bytes_max"] == 6000
    md = md_path.read_text()
    assert "| 6 |" in md and "2.50 (2.00–9.00) tm 2.60" in md
    assert "compute ratio (×)" in md and "peak train (MiB)" in md


def test_plots_regenerated_twice_are_identical(real_records, tmp_path):
    root = tmp_path / "results"
    submit([write_record(r, tmp_path / "run") for r in real_records], root)
    stored, _ = results_folder.read_folder(root)
    first = write_plots(stored, root, tmp_path / "plots1", include_noisy=True)
    names = sorted(p.relative_to(tmp_path / "plots1").as_posix() for p in first)
    hw = results_folder.hardware_key(real_records[0]["provenance"])
    assert names == sorted(
        f"{d}{n}.{ext}"
        for d, n in [
            (f"{hw}/", "compute_ratio"),
            (f"{hw}/", "memory_by_category"),
            (f"{hw}/", "checkpointing_tradeoff"),
            (f"{hw}/", "throughput"),
            (f"{hw}/", "predicted_vs_measured"),
            ("", "across_hardware"),
        ]
        for ext in ("svg", "png")
    )
    # the second run in a fresh process: nothing may depend on process state (hash seeds, ids, dates)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plot", "--results", str(root), "--out", str(tmp_path / "plots2")]
        + ["--include-noisy"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert proc.returncode == 0, proc.stderr
    for path in first:
        twin = tmp_path / "plots2" / path.relative_to(tmp_path / "plots1")
        assert twin.read_bytes() == path.read_bytes(), path.name
    assert "<dc:date>" not in (tmp_path / "plots1" / hw / "compute_ratio.svg").read_text()


def test_cite_gives_numbers_hardware_id_and_reproducing_commands(real_records, tmp_path):
    root = tmp_path / "results"
    record = copy.deepcopy(real_records[1])
    [outcome] = submit([write_record(record, tmp_path / "run")], root)
    text = cite(Record.from_dict(record, outcome.dest), root)
    m, prov = record["metrics"], record["provenance"]
    lo, hi = m["compute_ratio_ci95"]
    assert f"**{m['compute_ratio']:.2f}×**" in text and f"{lo:.2f}–{hi:.2f}, " in text
    assert f"Result ID `{record['id']}`" in text
    assert f"git checkout {prov['git_sha']}" in text
    assert "make bench SUITE= ARGS='" + " ".join(record["overrides"]) + "'" in text
    assert f"torch {prov['torch']}" in text and results_folder.hardware_label(prov) in text
    assert ("Measured from a modified working tree" in text) == bool(prov["git_dirty"])

    dirty = restamp(record, "2026-03-01T00:00:00+00:00")
    dirty["provenance"]["git_dirty"] = True
    dirty["id"] = record_id(dirty["config"], dirty["provenance"])
    dirty["flags"]["checks_failed"] = ["adamw_state_bytes"]
    text = cite(Record.from_dict(dirty, tmp_path / "x.json"), root)
    assert "Measured from a modified working tree" in text and "Self-checks failed**: adamw_state_bytes" in text


def test_unwritable_folder_and_full_disk_refuse_and_leave_nothing(real_records, tmp_path, monkeypatch):
    import errno

    from harness.records import schema as record_mod

    good = write_record(real_records[0], tmp_path / "run")
    locked = tmp_path / "readonly"
    locked.mkdir()
    os.chmod(locked, 0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): a read-only folder cannot be simulated")
        [outcome] = submit([good], locked)
        assert outcome.status == REFUSED and "is not writable" in outcome.reason
    finally:
        os.chmod(locked, 0o755)

    root = tmp_path / "results"
    submit([write_record(real_records[1], tmp_path / "other")], root)
    before = snapshot(root)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_mod.os, "fsync", full)
    [outcome] = submit([good], root)
    assert outcome.status == REFUSED and "No space left on device" in outcome.reason
    assert snapshot(root) == before  # the temp file went with the failure
