"""The record declared once: the schema is what validation, the tables and the metrics documentation read (the
documentation is held to it here, so the two cannot drift); one atomic write; one dotted-path getter; records/
and report/ work where torch is absent, and set no process-wide warnings filter."""

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from harness import repo_root
from harness.records import schema
from harness.records.io import read_record, record_bytes, replace_file, write_new_file, write_record
from harness.records.validate import RecordInvalid, load_bytes
from harness.report.frame import GROUPED_COLUMNS, METRIC_NAMES, STATISTICS

README = repo_root() / "results" / "README.md"
COMMITTED = repo_root() / "results" / "records"
ROOMS = ("records", "report")


def _section(text: str, title: str) -> str:
    """The text under one Markdown heading, up to the next heading of any level."""
    start = text.index(f"\n{title}\n")
    end = re.search(r"\n#{1,6} ", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + (end.start() if end else len(text))]


def _table_rows(section: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # without the header and its rule


def test_every_top_level_key_is_documented_and_nothing_else():
    rows = _table_rows(_section(README.read_text(), "## Top level"))
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row[0])}
    assert documented == set(schema.RECORD_KEYS)


def test_every_metric_column_is_documented_with_its_path_and_unit():
    rows = _table_rows(_section(README.read_text(), "### Metric columns"))
    documented = {row[0].strip("`"): (row[1].strip("`"), row[2]) for row in rows}
    assert documented == {m.column: (m.path, m.unit) for m in schema.METRICS}


def test_every_required_provenance_field_is_named_in_the_documentation():
    text = README.read_text()
    for name in [*schema.REQUIRED_PROVENANCE, *schema.REQUIRED_GPU_PROVENANCE]:
        assert f"`{name}`" in text, name


def test_every_metric_name_carries_its_unit():
    for m in schema.METRICS:
        assert (m.unit == "s") == (m.column.endswith("_s") and not m.column.endswith("_per_s")), m
        assert (m.unit == "bytes") == m.column.endswith("_bytes"), m
        assert m.unit.endswith("/s") == m.column.endswith("_per_s"), m
        assert m.unit in ("s", "bytes", "samples/s", "tokens/s", "ratio", "count") and m.doc, m
    assert len({m.column for m in schema.METRICS}) == len(schema.METRICS)


def test_the_tables_read_their_metrics_from_the_schema():
    assert METRIC_NAMES == [m.column for m in schema.METRICS]
    assert all(f"{m}_{s}" in GROUPED_COLUMNS for m in METRIC_NAMES for s in STATISTICS)


def test_lookup_is_the_one_dotted_path_getter():
    record = {"metrics": {"ci": [1.5, 2.5], "gone": None, "time": {"step": {"median_s": 0.25}}}}
    assert schema.lookup(record, "metrics.time.step.median_s") == 0.25
    assert schema.lookup(record, "metrics.ci.1") == 2.5
    assert schema.lookup(record, "metrics.gone") is None  # there and null: not missing
    for missing in ("metrics.ci.2", "metrics.time.fwd", "metrics.gone.x", "metrics.time.step.median_s.x"):
        with pytest.raises(KeyError, match=re.escape(missing)):
            schema.lookup(record, missing)
        assert schema.lookup(record, missing, None) is None


def test_atomic_writes_replace_or_refuse_and_leave_no_temp_file(tmp_path):
    table = replace_file(tmp_path / "t" / "results.md", "old ×")
    replace_file(table, "new ×")
    assert table.read_text(encoding="utf-8") == "new ×"
    assert stat.S_IMODE(table.stat().st_mode) == 0o644  # a shared folder: everyone can read what is generated
    data = write_new_file(tmp_path / "fit.json", b"{}\n")
    with pytest.raises(FileExistsError):
        write_new_file(data, b"other")
    assert data.read_bytes() == b"{}\n" and stat.S_IMODE(data.stat().st_mode) == 0o444
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []


def test_a_committed_record_reads_back_byte_for_byte(tmp_path):
    path = sorted(COMMITTED.glob("*/*.json"))[0]
    record = load_bytes(path.read_bytes())
    written = write_record(record, tmp_path)
    assert written.read_bytes() == record_bytes(record) and read_record(written) == record
    assert record_bytes(load_bytes(written.read_bytes())) == written.read_bytes()  # current version: unchanged


def test_an_old_record_the_analytic_model_cannot_read_is_refused_not_a_crash():
    raw = json.loads(sorted(COMMITTED.glob("*/*.json"))[0].read_bytes())
    raw["schema_version"] = "1.1"
    raw["config"]["workload"]["batch_size"] = 0  # the prediction divides by it during the migration
    with pytest.raises(RecordInvalid) as err:
        load_bytes(json.dumps(raw).encode())
    assert err.value.field in ("config_hash", "config.workload.batch_size")


def test_no_private_helper_is_imported_across_modules():
    for room in ROOMS:
        for path in sorted((repo_root() / "harness" / room).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                    assert not private, f"{path.name} imports {private} from {node.module}"


TORCH_FREE = """
import sys, warnings
import pandas as pd
import harness.records.submit, harness.records.validate, harness.records.io, harness.records.predicted
import harness.report.frame, harness.report.tables, harness.report.plots, harness.report.cite, harness.report.claims
print([m for m in ("torch", "bitsandbytes", "hydra") if m in sys.modules])
print([f for f in warnings.filters if f[2] is pd.errors.PerformanceWarning])
"""


def test_records_and_report_import_neither_torch_nor_a_global_warnings_filter():
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE],
        capture_output=True,
        text=True,
        cwd=repo_root(),
        env={**os.environ, "PYTHONPATH": str(repo_root())},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "[]"]


WITHOUT_TORCH = """
import sys
from pathlib import Path
sys.modules["torch"] = sys.modules["bitsandbytes"] = None  # any import of them raises ImportError
from harness.records.submit import TAKEN, submit
from harness.records.folder import read_folder
from harness.report.tables import write_tables
from harness.report.plots import write_plots
from harness.report.cite import cite
run, root = Path(sys.argv[1]), Path(sys.argv[2])
assert {o.status for o in submit([run], root)} == {TAKEN}
stored, problems = read_folder(root)
assert not problems and len(stored) == len(list(run.glob("*.json")))
tables = write_tables(stored, root, root / "tables", include_noisy=True)  # measured here: noisy by chance
print(len(tables), len(write_plots(stored, root, root / "plots", include_noisy=True)) > 0)
print(cite(stored[0], root).splitlines()[0])
"""


def test_submit_table_plot_and_cite_work_where_torch_is_absent(tmp_path):
    """Two configurations, checkpointing off and on, from the committed folder: every report path runs."""
    run = tmp_path / "run"
    run.mkdir()
    paths = sorted(COMMITTED.glob("*/mlp_full-adamw_ckpt-*.json"))
    picked = {p.name.split("_ckpt-")[1][:3]: p for p in paths}  # one with checkpointing off, one on
    for p in picked.values():
        shutil.copy(p, run / p.name)
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(run), str(tmp_path / "results")],
        capture_output=True,
        text=True,
        cwd=repo_root(),
        env={**os.environ, "PYTHONPATH": str(repo_root())},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 True" and lines[1].startswith("**backprop-bench result `")
    assert "PerformanceWarning" not in proc.stderr
