"""Sweeps and records: one process per case, failures as records, atomic no-clobber writes."""

import json
import math
import subprocess
import sys

import pytest

from harness.config.compose import make_case
from harness.records.build import build_record
from harness.records.io import read_record, write_record
from harness.records.outcome import Measurement
from harness.records.schema import SCHEMA_VERSION
from harness.records.submit import submit
from harness.run.sweep import run_sweep

SMALL = ["device=cpu", "model=mlp", "model.depth=2", "model.width=32", "measure.repeats=3", "measure.warmup=0"]


@pytest.mark.slow
def test_crashing_case_yields_error_record_and_sweep_goes_on(tmp_path):
    # Passes validation, fails when the model is built: real weights that are not there.
    crashing = ["device=cpu", "model=llama", f"model.weights_path={tmp_path / 'missing'}", "measure.repeats=3"]
    result = run_sweep([crashing, SMALL], tmp_path / "out", progress=False)
    assert [r["status"] for r in result.records] == ["error", "ok"]
    error = read_record(result.paths[0])
    assert error["error"]["type"] and "missing" in error["error"]["message"]
    assert error["command"].startswith("bench run ") and "model.weights_path=" in error["command"]
    ok = read_record(result.paths[1])
    assert all(c["passed"] for c in ok["checks"]) and len(ok["checks"]) >= 5
    assert len(list((tmp_path / "out").glob("*.json"))) == 2
    assert not list((tmp_path / "out").glob(".tmp-*"))  # no temp file left behind


@pytest.mark.slow
def test_bench_run_end_to_end_writes_one_complete_record(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *SMALL, "method=adamw8bit", f"output_dir={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [path] = list(out.glob("*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["schema_version"] == SCHEMA_VERSION
    m = record["metrics"]
    for phase in ("fwd_infer", "fwd_train", "fwd_bwd", "step"):
        assert m["time"][phase]["n"] == 3 and m["time"][phase]["median_s"] > 0
    # 2 layers of 32x32 + bias
    assert m["params"] == {"total": 2 * (32 * 32 + 32), "trainable": 2 * (32 * 32 + 32), "quantized_4bit": 0}
    prov = record["provenance"]
    assert len(prov["lock_sha256"]) == 64 and prov["torch"].startswith("2.13.0")
    assert record["command"].startswith("bench run ") and "method=adamw8bit" in record["command"]
    # the summary table shows this record's own numbers
    assert (
        f"{m['compute_ratio']:.2f} [{m['compute_ratio_ci95'][0]:.2f}–{m['compute_ratio_ci95'][1]:.2f}, " in proc.stdout
    )
    assert f"{len(record['checks'])}/{len(record['checks'])}" in proc.stdout
    assert f"{m['flop_ratio']:.2f}" in proc.stdout and m["flop_ratio"] == 3 - 1 / 2


def _record(method="sgd"):
    case = make_case(["model=mlp", "model.depth=2", "model.width=8", f"method={method}", "device=cpu"])
    return build_record(case, Measurement("ok", {"utc_time": "t"}, metrics={"x_s": math.nan, "time": {}}))


def test_record_id_follows_content_and_nan_becomes_null():
    a, b = _record(), _record(method="lora")
    assert a["id"] != b["id"] and a["config_hash"] != b["config_hash"]
    assert a["id"] == _record()["id"]
    assert a["metrics"]["x_s"] is None
    # the one builder places the prediction for the case: 2 layers of 8x8 + bias, fp32
    assert a["predicted"]["memory"]["params_bytes"] == 4 * 2 * (8 * 8 + 8)


def test_write_is_atomic_and_never_overwrites(tmp_path):
    record = _record()
    path = write_record(record, tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_record(record, tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.slow
def test_a_run_file_and_its_submitted_copy_share_one_name(tmp_path):
    """One naming rule (records/folder.record_filename): the id and the method spelled the same in a run's
    folder and in the results folder."""
    result = run_sweep([[*SMALL, "method=full_adamw"]], tmp_path / "run", progress=False)
    [run_file] = result.paths
    [outcome] = submit([run_file], tmp_path / "results")
    assert outcome.status == "taken"
    record = read_record(run_file)
    assert outcome.dest.name == run_file.name
    assert run_file.name.startswith("mlp_full-adamw_ckpt-off_") and f"_{record['id']}_" in run_file.name


def test_a_bad_start_method_is_named_and_nothing_is_created(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("BENCH_START_METHOD", "bogus")
    out = tmp_path / "never"
    assert main(["run", "device=cpu", "model=mlp", "model.depth=2", "model.width=8", f"output_dir={out}"]) == 2
    assert (
        "BENCH_START_METHOD: 'bogus' is not a start method here; allowed: forkserver, spawn" in capsys.readouterr().err
    )
    assert not out.exists()
