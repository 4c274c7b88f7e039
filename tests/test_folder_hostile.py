"""Every case of issue 19's "Why", as a test: records that crashed readers, path traversal, inputs that crashed
submit, reads that hung or exhausted memory, writes through planted symlinks, injection into what people paste.
Each is refused with a message naming file and field, or handled (skipped with one line, stored safely)."""

import copy
import csv
import io
import json
import os
import re

import pytest
from hostile import COMMITTED, deep, dumps, files_outside, forge, run_every_reader, seed_records, set_path

from harness.cli import main
from harness.records import folder as results_folder
from harness.records.io import record_bytes
from harness.records.submit import REFUSED, TAKEN, submit
from harness.report.escape import md_cell
from harness.report.tables import write_tables

SEEDS = seed_records()
OK, OOM = SEEDS[0], SEEDS[3]

# (what, record, the field its refusal names): the 22 reader crashes and the submit crashes of the issue
CRASHERS = [
    ("flags a list", set_path(OK, ("flags",), ["x"]), "flags"),
    ("flags.noisy a string", set_path(OK, ("flags", "noisy"), "fwd_bwd"), "flags.noisy"),
    ("flags.checks_failed an int", set_path(OK, ("flags", "checks_failed"), 3), "flags.checks_failed"),
    ("resolved a string", set_path(OK, ("resolved",), "x"), "resolved"),
    ("resolved.world_size a string", set_path(OK, ("resolved", "world_size"), "2"), "resolved.world_size"),
    ("oom error.phase an int", set_path(OOM, ("error", "phase"), 3), "error.phase"),
    ("oom error a list", set_path(OOM, ("error",), [1]), "error"),
    ("ci95 second element text", set_path(OK, ("metrics", "compute_ratio_ci95"), [1.0, "x"]), "metrics"),
    ("ci95 of three", set_path(OK, ("metrics", "compute_ratio_ci95"), [1.0, 2.0, 3.0]), "metrics"),
    ("overrides null", set_path(OK, ("overrides",), None), "overrides"),
    ("overrides of ints", set_path(OK, ("overrides",), [1]), "overrides[0]"),
    ("utc_time an int", set_path(OK, ("provenance", "utc_time"), 3), "provenance.utc_time"),
    ("lone surrogate in command", set_path(OK, ("command",), "bench \ud800"), "command"),
    ("predicted a string", set_path(OK, ("predicted",), "x"), "predicted"),
    ("predicted.comparison of ints", set_path(OK, ("predicted", "comparison"), [1]), "predicted.comparison[0]"),
    ("harness_version a list", set_path(OK, ("provenance", "harness_version"), []), "provenance.harness_version"),
    ("environment a string", set_path(OK, ("provenance", "environment"), "lock"), "provenance.environment"),
    ("model.name an int", set_path(OK, ("config", "model", "name"), 1), "config.model.name"),
    ("batch_size a float", set_path(OK, ("config", "workload", "batch_size"), 2.5), "config.workload.batch_size"),
    ("time.step a number", set_path(OK, ("metrics", "time", "step"), 1.0), "metrics.time.step"),
    ("checks a dict", set_path(OK, ("checks",), {}), "checks"),
    ("memory a list", set_path(OK, ("metrics", "memory"), []), "metrics.memory"),
    ("NUL in a string", set_path(OK, ("provenance", "cpu_model"), "AMD\x00EPYC"), "provenance.cpu_model"),
    ("300-character method", set_path(OK, ("config", "method", "name"), "m" * 300), "config.method.name"),
    ("cpu_cores traversal", set_path(OK, ("provenance", "cpu_cores"), "2/../../../../tmp/x"), "provenance.cpu_cores"),
    ("cpu_cores into another folder", set_path(OK, ("provenance", "cpu_cores"), "/../cpu-amd-epyc-2"), "provenance"),
    ("41-deep nesting", set_path(OK, ("metrics", "extra"), deep(40)), "file"),
]


def _write(tmp_path, name, data: bytes):
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path):
    """A results folder holding the seed records, and the untouched readers' output over it."""
    root = tmp_path / "results"
    files = [_write(tmp_path, f"seed{i}.json", record_bytes(r)) for i, r in enumerate(SEEDS)]
    assert [o.status for o in submit(files, root)] == [TAKEN] * len(SEEDS)
    return root


def test_every_crasher_of_the_issue_is_refused_naming_its_field_and_the_batch_goes_on(tmp_path, folder):
    nested = b"[" * 100_000 + b"]" * 100_000  # as text: no Python structure can hold it to write it
    files = [_write(tmp_path, f"bad{i}.json", dumps(record)) for i, (_, record, _) in enumerate(CRASHERS)]
    # text-level crashers: 1e999 outside metrics, a 5000-digit int
    files.append(_write(tmp_path, "inf.json", dumps(OK).replace(b'"noisy_cv": 0.1', b'"noisy_cv": 1e999')))
    files.append(_write(tmp_path, "digits.json", dumps(OK).replace(b'"cpu_cores": 2', b'"cpu_cores": ' + b"9" * 5000)))
    files.append(_write(tmp_path, "deep.json", dumps(OK).replace(b'"cpu_cores": 2', b'"cpu_cores": ' + nested)))
    good = forge(set_path(OK, ("provenance", "utc_time"), "2030-01-01T00:00:00+00:00"))
    files.append(_write(tmp_path, "good.json", record_bytes(good)))
    outcomes = submit(files, folder)
    assert [o.source for o in outcomes] == files  # one outcome per file, in order
    for (what, _, field), outcome in zip(CRASHERS, outcomes):
        assert outcome.status == REFUSED, what
        assert outcome.reason.startswith(f"{field}"), (what, outcome.reason)
    assert outcomes[-4].reason.startswith("config.measure.noisy_cv: Input should be a finite number")
    assert outcomes[-3].reason.startswith("file: an integer of 5000 digits")
    assert outcomes[-2].reason.startswith("file: nested 1000")
    assert outcomes[-1].status == TAKEN  # the good record after all the bad ones
    readers = run_every_reader(folder)
    assert readers["problems"] == [] and len(readers["stored"]) == len(SEEDS) + 1
    assert files_outside(tmp_path, [tmp_path / "in", folder]) == []


def test_path_components_from_a_record_are_safe_names_inside_the_folder(tmp_path, folder):
    hostile = forge(set_path(OK, ("provenance", "cpu_model"), "../../../../tmp/AMD EPYC/.."))
    [outcome] = submit([_write(tmp_path, "x.json", record_bytes(hostile))], folder)
    assert outcome.status == TAKEN
    assert outcome.dest.parent == folder / "records" / "cpu-tmp-amd-epyc-2c"
    assert files_outside(tmp_path, [tmp_path / "in", folder]) == []
    # today's keys are the names the committed folder has
    for path in sorted(COMMITTED.glob("*/*.json")):
        assert results_folder.hardware_key(json.loads(path.read_text())["provenance"]) == path.parent.name, path
    long = results_folder.slug("x" * 500)
    assert len(long) == 80 and re.fullmatch(r"[a-z0-9-]+", long)


def test_reads_take_regular_files_only_and_name_what_they_skipped(tmp_path, folder, capsys):
    hw = folder / "records" / "cpu-amd-epyc-2c"
    name = "mlp_full-adamw_ckpt-off_{}_{}.json"
    os.mkfifo(hw / name.format("a" * 16, "b" * 12))  # would hang a reader that opened it
    os.symlink("/dev/zero", hw / name.format("c" * 16, "d" * 12))  # would grow memory without bound
    with open(hw / name.format("e" * 16, "f" * 12), "wb") as f:  # 3 GB, sparse: refused before reading
        f.truncate(3 * 1024**3)
    (hw / name.format("0" * 16, "1" * 12)).mkdir()
    os.symlink("/etc", folder / "records" / "planted")
    assert main(["table", "--results", str(folder)]) == 1  # the tables are written; exit 1 says some were skipped
    err = capsys.readouterr().err
    for what in ("a FIFO", "a symlink, not", "3221225472 bytes is over", "a directory, not", "a symlink where"):
        assert what in err, what
    assert len(err.strip().splitlines()) == 5  # one line each
    assert (folder / "tables" / "v1" / "results.csv").is_file()
    # and submit says the same of its inputs
    os.mkfifo(tmp_path / "in" / "fifo.json")
    [outcome] = submit([tmp_path / "in" / "fifo.json"], folder)
    assert outcome.status == REFUSED and "a FIFO, not a regular file" in outcome.reason


@pytest.mark.parametrize("planted", ["site", "tables", "plots"])
def test_writes_never_follow_a_planted_symlink(tmp_path, folder, planted, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, folder / planted)
    command = {"site": "site", "tables": "table", "plots": "plot"}[planted]
    assert main([command, "--results", str(folder)]) == 1
    assert "a symlink where a folder belongs: refused" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_planted_lock_symlink_is_refused_and_temp_files_of_a_killed_submit_are_cleaned(tmp_path, folder):
    hw = folder / "records" / "cpu-amd-epyc-2c"
    (hw / ".tmp-0123abcd.json").write_bytes(b'{"half": ')  # what a kill -9 mid-write leaves
    good = forge(set_path(OK, ("provenance", "utc_time"), "2031-01-01T00:00:00+00:00"))
    source = _write(tmp_path, "good.json", record_bytes(good))
    os.rename(folder / ".lock", tmp_path / "lock")
    os.symlink(tmp_path / "elsewhere-lock", folder / ".lock")
    [outcome] = submit([source], folder)
    assert outcome.status == REFUSED and "planted as the lock" in outcome.reason
    assert not (tmp_path / "elsewhere-lock").exists()
    os.unlink(folder / ".lock")
    outcomes = submit([source], folder)
    assert [o.status for o in outcomes] == ["cleaned", TAKEN]
    assert not (hw / ".tmp-0123abcd.json").exists()


def test_an_interrupted_submit_has_reported_what_it_did(tmp_path, folder):
    records = [forge(set_path(OK, ("provenance", "utc_time"), f"2032-01-0{i}T00:00:00+00:00")) for i in (1, 2, 3)]
    files = [_write(tmp_path, f"r{i}.json", record_bytes(r)) for i, r in enumerate(records)]
    seen = []

    def report(outcome):
        seen.append(outcome)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        submit(files, folder, report=report)
    assert [o.status for o in seen] == [TAKEN, TAKEN] and all(o.dest.is_file() for o in seen)
    # the lock was released: the rerun takes the rest and reports the others as duplicates
    assert [o.status for o in submit(files, folder)] == ["duplicate", "duplicate", TAKEN]


HOSTILE_TEXT = "x\n# Heading\n<img src=x onerror=alert(1)> [link](javascript:alert(1)) a|b"


def _outside_fence(text: str) -> tuple[list[str], list[str]]:
    """(lines outside fenced code blocks, the blocks' bodies joined), by CommonMark's fence rule."""
    outside, inside, fence = [], [], None
    for line in text.splitlines():
        run = re.match(r"^(`{3,})", line)
        if fence is None and run:
            fence = run.group(1)
        elif fence is not None and re.fullmatch(rf"`{{{len(fence)},}}\s*", line):
            fence = None
            inside.append("<end>")
        elif fence is not None:
            inside.append(line)
        else:
            outside.append(line)
    assert fence is None, "a fenced block was left open"
    return outside, inside


def test_cite_prints_one_intact_fenced_block_and_no_markup_from_the_record(tmp_path, folder):
    record = copy.deepcopy(OK)
    record["overrides"] = [*record["overrides"], "model.preset=x\n```\n# owned", "a````b"]
    record["provenance"]["cpu_model"] = HOSTILE_TEXT
    record["provenance"]["torch"] = "2.13.0\n\n## Injected"
    record = forge(record)
    [outcome] = submit([_write(tmp_path, "c.json", record_bytes(record))], folder)
    assert outcome.status == TAKEN
    [stored] = results_folder.find(folder, record["id"])
    from harness.report.cite import cite

    text = cite(stored, folder)
    outside, inside = _outside_fence(text)
    assert inside.count("<end>") == 1 and text.rstrip().endswith("`````")  # one block, closed by its own fence
    assert any("# owned" in line for line in inside)  # the override is shown, inside the block
    assert not any(line.lstrip().startswith("#") for line in outside)
    assert "<img" not in text and "](javascript:" not in text and "Submitted:" not in text  # no signers here


def test_tables_and_claims_escape_cells_and_no_csv_cell_starts_a_formula(tmp_path, folder):
    record = forge(set_path(OK, ("provenance", "cpu_model"), "=HYPERLINK(1)|<b>x</b>\nrow"))
    record = forge(set_path(record, ("provenance", "torch"), "@SUM(1)"))
    [outcome] = submit([_write(tmp_path, "t.json", record_bytes(record))], folder)
    assert outcome.status == TAKEN
    stored, _ = results_folder.read_folder(folder)
    csv_path, md_path = write_tables(stored, folder, folder / "tables")
    md = md_path.read_text()
    assert "<b>" not in md and "## =HYPERLINK(1)|&lt;b&gt;x&lt;/b&gt; row (CPU, 2 cores)" in md  # one line
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in rows}) == 1  # no cell split by record text
    assert md_cell("a|b\n<i>`c`](j:x)") == "a\\|b &lt;i&gt;\\`c\\`]\\(j:x)"
    assert all(line.startswith(("|", "#", "`", "Generated", "median", "when", "")) for line in md.splitlines())
    assert main(["site", "--results", str(folder)]) == 0
    assert main(["claims", "--results", str(folder), "--out", str(folder / "claims.md")]) == 0
    assert "<b>" not in (folder / "claims.md").read_text()
    for path in (csv_path, folder / "site" / "records.csv"):
        cells = [c for row in csv.reader(io.StringIO(path.read_text())) for c in row]
        assert any(c.startswith("'=HYPERLINK") for c in cells) or any(c.startswith("'@SUM") for c in cells)
        for cell in cells:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so (a negative number is data)


@pytest.mark.parametrize(
    "override, key",
    [
        ("workload.batch_size=1e14", "workload.batch_size"),
        ("workload.batch_size=100000000000000", "workload.batch_size"),
        ("model.width=99999999999", "model.width"),
        ("workload.seq_len=4000000000000", "workload.seq_len"),
    ],
)
def test_sizes_no_device_holds_exit_2_naming_the_key_before_work(tmp_path, override, key, capsys):
    import time

    start = time.monotonic()
    code = main(["run", "model=mlp", "device=cpu", f"output_dir={tmp_path / 'run'}", override])
    err = capsys.readouterr().err
    assert code == 2 and f"config error: {key}:" in err, err
    assert time.monotonic() - start < 10 and not any((tmp_path / "run").glob("*.json"))


def test_a_folder_of_only_an_oom_record_is_read_by_every_reader(tmp_path):
    """Found by the fuzz test: the hardware page grouped an empty frame by a column it never got."""
    root = tmp_path / "results"
    record = set_path(OOM, ("metrics", "oom"), {})
    [outcome] = submit([_write(tmp_path, "oom.json", record_bytes(record))], root)
    assert outcome.status == TAKEN
    readers = run_every_reader(root)
    page = readers["site"][f"hardware/{results_folder.hardware_key(record['provenance'])}.html"]
    assert "No configuration measured here has been measured on other hardware yet." in page
