"""Out of memory as a result, resumable sweeps, no partial records after a kill, and bench fit."""

import json
import signal
import subprocess
import sys

import pytest

from harness.cli import main
from harness.records import folder as results_folder
from harness.records.io import read_record
from harness.records.submit import TAKEN, submit
from harness.report.tables import write_tables
from harness.run.sweep import run_sweep
from harness.units import GIB

MLP = [
    "device=cpu",
    "model=mlp",
    "model.depth=4",
    "model.width=256",
    "workload.seq_len=64",
    "measure.repeats=3",
    "measure.warmup=0",
    "measure.flops=false",
]


@pytest.mark.slow
def test_case_over_its_budget_is_an_oom_record_and_the_next_case_runs(tmp_path):
    over = [*MLP, "workload.batch_size=64", "device.memory_budget_gib=0.01"]
    fits = [*MLP, "workload.batch_size=2", "device.memory_budget_gib=0.01"]
    result = run_sweep([over, fits], tmp_path / "run", progress=False)
    assert [r["status"] for r in result.records] == ["oom", "ok"]
    oom = read_record(result.paths[0])
    figures = oom["metrics"]["oom"]
    # the first pass over the budget: inference alone (1 MiB of weights, 8 MiB of batch, 3 x 4 MiB of the
    # forward's tensors) does not fit 10 MiB
    assert oom["error"]["phase"] == "fwd_infer" and oom["error"]["type"] == "BudgetExceeded"
    assert figures["budget_bytes"] == int(0.01 * GIB) and figures["budget_emulated"] is True
    assert figures["live_bytes"] > figures["budget_bytes"] >= figures["live_bytes"] - figures["request_bytes"]
    ok = read_record(result.paths[1])
    # the case that fitted stayed within the budget the whole time, and says the budget was emulated
    assert ok["metrics"]["memory_budget"]["peak_live_bytes"] <= int(0.01 * GIB)
    assert ok["metrics"]["memory_budget"]["emulated"] is True
    # an oom record is a result: submitted, and shown as "does not fit" in the tables
    root = tmp_path / "results"
    assert [o.status for o in submit([tmp_path / "run"], root)] == [TAKEN, TAKEN]
    stored, problems = results_folder.read_folder(root)
    assert problems == []
    md = write_tables(stored, root, root / "tables")[1].read_text()
    assert "does not fit" in md and "out of memory on" in md and "in fwd_infer" in md


@pytest.mark.slow
def test_rerun_skips_recorded_cases_and_reruns_deleted_ones(tmp_path):
    cases = [[*MLP, f"workload.batch_size={b}"] for b in (1, 2, 3)]
    out = tmp_path / "run"
    first = run_sweep(cases, out, progress=False)
    assert [r["status"] for r in first.records] == ["ok"] * 3 and first.skipped == []
    first.paths[1].unlink()
    again = run_sweep(cases, out, progress=False)
    assert [r["config"]["workload"]["batch_size"] for r in again.records] == [2]
    assert sorted(again.skipped) == sorted([first.paths[0], first.paths[2]])
    forced = run_sweep(cases, out, progress=False, force=True)
    assert len(forced.records) == 3 and forced.skipped == []
    assert len(list(out.glob("*.json"))) == 6  # nothing overwritten: the forced reruns are new files


def test_a_process_killed_mid_write_leaves_no_partial_record(real_records, tmp_path):
    """The writer is killed after the bytes are out but before the link: no record under any *.json name
    a reader looks at, and the sweep's resume logic treats the case as not run."""
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "record.json").write_text(json.dumps(real_records[0]))
    script = f"""
import json, os, time
from pathlib import Path
from harness.records import io as record
os.fsync = lambda fd: (print('written', flush=True), time.sleep(60))
record.write_record(json.loads(Path({str(tmp_path / "record.json")!r}).read_text()), Path({str(out)!r}))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in out.glob("*.json") if not p.name.startswith(".")] == []
    leftovers = list(out.glob(".tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the temp file, never a record name
    from harness.run.sweep import existing_results

    assert existing_results(out) == ({}, [])


@pytest.mark.slow
def test_bench_fit_finds_a_batch_size_that_fits_while_twice_it_does_not(tmp_path, capsys):
    out = tmp_path / "fit"
    budget = "device.memory_budget_gib=0.0052"
    code = main(["fit", *MLP, budget, "fit.search=workload.batch_size", f"output_dir={out}"])
    assert code == 0
    fit = json.loads((out / "fit.json").read_text())
    best = fit["max_fitting"]
    assert best and best >= 1 and fit["first_not_fitting"] == best + 1
    by_value = {p["value"]: p["status"] for p in fit["probes"]}
    assert all(status == ("ok" if value <= best else "oom") for value, status in by_value.items())
    if 2 * best not in by_value:  # doubling may have jumped past it: check twice the answer directly
        twice = run_sweep([[*MLP, budget, f"workload.batch_size={2 * best}"]], tmp_path / "twice", progress=False)
        assert twice.records[0]["status"] == "oom"
    assert len(list(out.glob("*.json"))) == len(fit["probes"]) + 1  # one record per probe, and fit.json
    assert fit["device"]["budget_emulated"] is True and fit["device"]["memory_budget_gib"] == 0.0052
    assert isinstance(fit["predicted"]["value"], int)
    printed = capsys.readouterr().out
    assert f"workload.batch_size: {best} fits in 0.0052 GiB (emulated budget) (measured)" in printed


def test_bad_fit_and_budget_input_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["fit", *MLP, "fit.search=model.depth", f"output_dir={tmp_path / 'a'}"]) == 2
    assert "fit.search: 'model.depth' cannot be searched" in capsys.readouterr().err
    assert main(["fit", *MLP, "fit.search=workload.batch_size", f"output_dir={tmp_path / 'b'}"]) == 2
    assert "device.memory_budget_gib: bench fit on a CPU needs a budget" in capsys.readouterr().err
    assert main(["run", *MLP, "device.memory_budget_gib=-1", f"output_dir={tmp_path / 'c'}"]) == 2
    assert "device.memory_budget_gib: must be a positive number of GiB" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_cpu_budget_counts_live_tensor_bytes_exactly_and_fails_over_it():
    import torch

    from harness.measure.budget import BudgetExceeded, CpuBudget
    from harness.measure.case import Stage

    root = torch.zeros(1024)  # 4 KiB held before the mode starts
    mode = CpuBudget(64 * 1024, Stage())
    mode.admit([root, root[:10]])
    assert mode.live_bytes == 4096
    with mode:
        a = torch.ones(4096)  # +16 KiB
        assert mode.live_bytes == 4096 + 16384
        view = a[:10]  # a view shares the storage: nothing new
        assert mode.live_bytes == 4096 + 16384
        del a, view
        assert mode.live_bytes == 4096  # freed storage leaves the count
        with pytest.raises(BudgetExceeded) as failed:
            torch.ones(16 * 1024)  # 64 KiB on top of 4 KiB: over a 64 KiB budget
    assert failed.value.figures["request_bytes"] == 65536 and failed.value.figures["live_bytes"] == 4096 + 65536
    assert isinstance(failed.value, torch.OutOfMemoryError)  # what the sweep turns into status: oom
    # a factory op is sized on the meta device first: refused before anything was allocated, as CUDA refuses
    assert "refused before allocating" in failed.value.figures["op"]
    assert mode.peak_bytes == 4096 + 16384 and mode.live_bytes == 4096
