"""`bench cite` finds a record in a run folder as well as in the results folder (a run's file and its submitted
copy have one name: tests/test_sweep_and_records.py)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli import main
from harness.records.io import write_record
from harness.records.submit import submit
from harness.records.validate import load_bytes

COMMITTED = sorted((Path(__file__).resolve().parent.parent / "results" / "records").glob("*/*.json"))


def test_cite_finds_a_record_in_a_run_folder_and_says_it_is_not_submitted(tmp_path, capsys):
    root = tmp_path / "results"
    record = load_bytes(COMMITTED[0].read_bytes())
    run_file = write_record(record, root / "runs" / "20260101T000000Z-smoke")
    (run_file.parent / "logs").mkdir()  # what else a run folder holds is not read
    (run_file.parent / "case-hash.json").write_text("{}")  # nor a file not named as a record
    assert main(["cite", record["id"][:8], "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"**backprop-bench result `{record['id']}`**" in out
    assert f"record `runs/20260101T000000Z-smoke/{run_file.name}` (in a run folder, not submitted" in out
    submit([run_file], root)  # once submitted, the results folder's copy is the one cited
    assert main(["cite", record["id"][:8], "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "record `records/" in out and "not submitted" not in out
    other = json.loads(COMMITTED[1].read_text())["id"]
    assert main(["cite", other[:8], "--results", str(root)]) == 1
    assert f"no record with id {other[:8]!r} under {root / 'records'}, {root / 'runs'}" in capsys.readouterr().err
