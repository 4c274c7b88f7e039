"""The measurement and submit side of the noise gate: the end of a sweep names the records that are noisy,
contended or from a modified tree and does not invite their submission; `bench submit` warns about them and
`--strict` refuses the submission, copying nothing. Committed records are the inputs (real measurements)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli_run import _next_steps
from harness.records.caveats import caveats
from harness.records.schema import CONTENDED_RULE, record_id
from harness.report.summary import HEADERS, summary_rows, weak_records

RECORDS = Path(__file__).resolve().parent.parent / "results" / "records"


def _committed() -> tuple[Path, Path]:
    """A clean committed record and a noisy one (the first of each, by name)."""
    clean = noisy = None
    for path in sorted(RECORDS.glob("*/*.json")):
        flags = json.loads(path.read_text())["flags"]
        if flags["noisy"] and noisy is None:
            noisy = path
        if not flags["noisy"] and not flags.get("contended") and clean is None:
            clean = path
    assert clean and noisy
    return clean, noisy


def _variant(path: Path, out: Path, *, contended=False, dirty=False) -> Path:
    """A copy of a committed record as a contended or dirty run would have written it (its id follows its
    provenance, as build_record makes it)."""
    record = json.loads(path.read_text())
    record["flags"]["contended"] = contended
    record["provenance"]["git_dirty"] = dirty
    record["provenance"]["utc_time"] = "2026-01-0%dT00:00:00+00:00" % (1 + contended + 2 * dirty)  # another run
    record["id"] = record_id(record["config"], record["provenance"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))
    return out


def test_caveats_name_each_weakness_and_nothing_else(tmp_path):
    clean, noisy = _committed()
    assert caveats(json.loads(clean.read_text())) == {}
    record = json.loads(noisy.read_text())
    phases = ", ".join(record["flags"]["noisy"])
    assert caveats(record) == {
        "noisy": f"noisy phases {phases} (timing cv above {record['config']['measure']['noisy_cv']})"
    }
    both = json.loads(_variant(clean, tmp_path / "r.json", contended=True, dirty=True).read_text())
    both["provenance"]["load"] = {
        "start": {"running_elsewhere": 3, "usable_cores": 2},
        "end": {"running_elsewhere": 1, "usable_cores": 2},
    }
    found = caveats(both)
    assert list(found) == ["contended", "dirty"]
    both["flags"]["noisy"] = ["step", "\x1b[2Jowned"]  # a hostile record's text reaches a terminal escaped
    assert caveats(both)["noisy"].startswith("noisy phases step, '\\x1b[2Jowned' (timing cv above")
    assert found["contended"] == f"contended: {CONTENDED_RULE} (3 other process(es) running on 2 core(s))"


def test_the_summary_prints_ids_and_does_not_say_submit_when_a_record_is_weak(tmp_path, capsys):
    clean, noisy = _committed()
    records = [json.loads(clean.read_text()), json.loads(noisy.read_text())]
    rows = summary_rows(records)
    assert HEADERS[0] == "id" and [row[0] for row in rows] == [r["id"] for r in records]
    assert all(len(row) == len(HEADERS) for row in rows)
    weak = weak_records(records)
    assert len(weak) == 1 and weak[0].startswith(records[1]["id"]) and "noisy phases" in weak[0]
    _next_steps(records, tmp_path)
    said = capsys.readouterr().out
    assert "submit them" not in said and "1 of 2 record(s) are not clean" in said and records[1]["id"] in said
    assert "idle machine" in said and "--strict" in said
    _next_steps(records[:1], tmp_path)
    assert capsys.readouterr().out.startswith(f"submit them to the shared results folder: make submit RUN={tmp_path}")


def test_submit_warns_and_strict_refuses_copying_nothing(tmp_path, capsys):
    clean, noisy = _committed()
    run = tmp_path / "run"
    run.mkdir()
    for source in (clean, noisy):
        (run / source.name).write_bytes(source.read_bytes())
    _variant(clean, run / "contended.json", contended=True)
    _variant(clean, run / "dirty.json", dirty=True)
    strict_root = tmp_path / "strict"
    assert main(["submit", str(run), "--to", str(strict_root), "--strict"]) == 2
    out, err = capsys.readouterr()
    assert not strict_root.exists()  # nothing copied, not even the lock file
    refused = [line for line in err.splitlines() if line.startswith("refused")]
    assert len(refused) == 4 and all("strict: " in line and "nothing was copied" in line for line in refused)
    assert sum("noisy phases" in line for line in refused) == 1
    assert sum("contended: " in line for line in refused) == 1
    assert sum("dirty: " in line for line in refused) == 1
    assert sum("clean, but 3 other record(s) here are not" in line for line in refused) == 1
    assert out.strip().endswith(f"0 taken, 0 duplicate, 4 refused -> {strict_root}")

    root = tmp_path / "results"
    assert main(["submit", str(run), "--to", str(root)]) == 0
    out, err = capsys.readouterr()
    assert len(list((root / "records").glob("*/*.json"))) == 4
    warnings = [line for line in err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 3 and all("--strict refuses such records" in line for line in warnings)
    assert main(["submit", str(run / clean.name), "--to", str(tmp_path / "clean"), "--strict"]) == 0


def test_the_schema_keeps_old_records_valid_and_types_the_new_flag():
    from harness.records.validate import RecordInvalid, check

    records = (json.loads(p.read_text()) for p in sorted(RECORDS.glob("*/*.json")))
    record = next(r for r in records if "contended" not in r["flags"])  # one written before the flag
    assert check(copy.deepcopy(record))  # valid
    record["flags"]["contended"] = "yes"
    with pytest.raises(RecordInvalid, match="flags.contended"):
        check(record)


def test_cite_says_a_record_was_measured_while_other_work_ran(tmp_path, capsys):
    clean, _ = _committed()
    run = tmp_path / "results" / "runs" / "r"
    record = json.loads(_variant(clean, tmp_path / "contended.json", contended=True).read_text())
    from harness.records.io import write_record

    write_record(record, run)
    assert main(["cite", record["id"], "--results", str(tmp_path / "results")]) == 0
    said = capsys.readouterr().out
    assert f"> ⚠ **Measured while other work ran** (`flags.contended`: {CONTENDED_RULE})" in said
    assert main(["cite", json.loads(clean.read_text())["id"]]) == 0  # the committed clean record: no such line
    assert "other work ran" not in capsys.readouterr().out
