"""Scale-out (issue 12): multi-rank cases through torchrun on CPU (gloo), the per-rank analytic model, the
parallel/launcher config rules, and sweeps as submitit jobs."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness.config.case import config_hash
from harness.config.compose import make_case, plan_cases, plan_launcher
from harness.config.groups import ConfigError
from harness.config.parallel import fsdp_chunk_rows, fsdp_local_numel, fsdp_padded_numel
from harness.predict import analytic

# width 33 does not divide by 2 ranks: the padding rule shows (17 rows on rank 0, 16 on rank 1, 17 stored on both)
MLP = ["model=mlp", "model.depth=4", "model.width=33", "workload.batch_size=2", "workload.seq_len=8"]
QUICK = ["measure.repeats=3", "measure.warmup=1", "measure.flops=false"]
W, DEPTH, BYTES = 33, 4, 4
# one block of MLP: weight (33, 33) and bias (33,)
SINGLE_PARAMS = DEPTH * (W * W + W) * BYTES
PADDED_PARAMS = DEPTH * (17 * W + 17) * BYTES
LOCAL_STATE = {0: DEPTH * (17 * W + 17) * BYTES, 1: DEPTH * (16 * W + 16) * BYTES}
STEPS = 2 * DEPTH * 4  # AdamW's float32 `step`, one per parameter tensor (weight and bias of each block)


def test_padding_rule_by_hand():
    assert fsdp_chunk_rows(33, 2) == 17 and fsdp_chunk_rows(32, 2) == 16
    assert fsdp_padded_numel((33, 33), 2) == 17 * 33
    assert [fsdp_local_numel((33, 33), 2, r) for r in (0, 1)] == [17 * 33, 16 * 33]
    # three rows over four ranks: chunks of one, the last rank holds nothing but stores one padded row
    assert [fsdp_local_numel((3,), 4, r) for r in range(4)] == [1, 1, 1, 0]
    assert fsdp_padded_numel((3,), 4) == 1


def test_per_rank_prediction_by_hand():
    fsdp = analytic.predict(make_case([*MLP, "parallel=fsdp"]).config)
    assert fsdp["memory"]["params_bytes"] == PADDED_PARAMS
    assert fsdp["memory"]["grads_bytes"] == PADDED_PARAMS
    assert fsdp["memory"]["optimizer_bytes"] == 2 * LOCAL_STATE[0] + STEPS  # rank 0 holds the largest shard
    # the blocks gathered at once: the one computed and the one prefetched, 2 x 17 rows each; without
    # resharding after forward, every block
    block = (2 * 17 * W + 2 * 17) * BYTES
    assert fsdp["rank"]["fsdp_gathered_bytes"] == 2 * block
    kept = analytic.predict(make_case([*MLP, "parallel=fsdp", "parallel.reshard_after_forward=false"]).config)
    assert kept["rank"]["fsdp_gathered_bytes"] == DEPTH * block
    single = analytic.predict(make_case(MLP).config)
    ddp = analytic.predict(make_case([*MLP, "parallel=ddp"]).config)
    assert ddp["memory"] == single["memory"] and single["memory"]["params_bytes"] == SINGLE_PARAMS
    assert ddp["rank"]["ddp_bucket_bytes"] == SINGLE_PARAMS  # one more copy of every fp32 gradient


def test_single_process_hash_is_unchanged_by_the_parallel_group():
    case = make_case(MLP)
    assert case.config.parallel.name == "none"
    without = {k: v for k, v in case.config_dict.items() if k != "parallel"}
    assert case.config_hash == config_hash(without)
    assert make_case([*MLP, "parallel=fsdp"]).config_hash != case.config_hash


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["parallel=fsdp", "method=qlora", "precision=amp_bf16"], "method"),
        (["parallel=fsdp", "method=adamw8bit"], "method"),
        (["parallel=fsdp", "precision=amp_fp16"], "precision"),
        (["parallel.nproc=2"], "parallel.nproc"),
        (["parallel=ddp", "parallel.nproc=0"], "parallel.nproc"),
        (["parallel=ddp", "measure.gradients=true"], "measure.gradients"),
        (["parallel=ddp", "device.memory_budget_gib=1"], "device.memory_budget_gib"),
        (["parallel=zero3"], "parallel"),
    ],
)
def test_combinations_that_cannot_run_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        make_case([*MLP, *overrides])
    assert err.value.key == key


def test_launcher_is_kept_out_of_the_case():
    cases = plan_cases([*MLP, "launcher=slurm", "launcher.partition=gpu"], multirun=False)
    assert cases[0].config.launcher is None and "launcher" not in cases[0].config_dict
    assert not any(o.startswith("launcher") for o in cases[0].overrides)
    assert cases[0].config_hash == make_case(MLP).config_hash
    launcher = plan_launcher(["launcher=slurm", "launcher.partition=gpu"], cases)
    assert launcher.name == "slurm" and launcher.partition == "gpu"
    with pytest.raises(ConfigError) as err:
        plan_launcher(["launcher=local"], [make_case([*MLP, "parallel=ddp", "parallel.nnodes=2"])])
    assert err.value.key == "parallel.nnodes"


def _run(overrides):
    from support import record_in_process

    return record_in_process(overrides)


@pytest.fixture(scope="module")
def single_record():
    return _run([*MLP, *QUICK])


@pytest.mark.slow
@pytest.mark.parametrize("style", ["fsdp", "ddp"])
def test_two_ranks_hold_what_the_padding_rule_and_the_replica_say(style, single_record):
    record = _run([*MLP, *QUICK, f"parallel={style}"])
    assert record["status"] == "ok", record.get("error")
    single = single_record["metrics"]["memory"]
    assert single["params_bytes"] == SINGLE_PARAMS  # measured in one process, as counted by hand
    ranks = record["metrics"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    for entry in ranks:
        memory = entry["memory"]
        if style == "fsdp":
            # half of one process's figures, to the padding rule's bytes
            assert memory["params_bytes"] == PADDED_PARAMS == single["params_bytes"] // 2 + DEPTH * (W + 1) // 2 * 4
            assert memory["grads_bytes"] == PADDED_PARAMS
            assert memory["optimizer_bytes"] == 2 * LOCAL_STATE[entry["rank"]] + STEPS
            # the unit computed and the one prefetched, or one all-gather output more while its copy-out runs
            gathered, block = memory["fsdp"]["gathered_peak_bytes"], 2 * (17 * W + 17) * BYTES
            assert gathered in (entry["predicted_memory"]["fsdp_gathered_bytes"], 3 * block), gathered
        else:
            for key in ("params_bytes", "grads_bytes", "optimizer_bytes"):
                assert memory[key] == single[key]
            assert memory["ddp_bucket_bytes"] == single["grads_bytes"]
        # predicted = measured, rank by rank
        for key in ("params_bytes", "grads_bytes", "optimizer_bytes"):
            assert memory[key] == entry["predicted_memory"][key], (style, entry["rank"], key)
        assert memory["activations_bytes"] == single["activations_bytes"]  # the local batch is the same
        assert entry["checks_failed"] == []
    assert record["resolved"]["world_size"] == 2 and record["resolved"]["global_batch_size"] == 4
    assert record["provenance"]["distributed"]["backend"] == "gloo"
    assert all(c["agrees"] for c in record["predicted"]["comparison"] if c["name"] != "flop_ratio")
    slowest = max(ranks, key=lambda r: r["time"]["step"])
    assert record["metrics"]["time"]["step"]["median_s"] == slowest["time"]["step"]
    assert record["metrics"]["time_rank"] == slowest["rank"]
    # every rank steps its own batch (2 x 8 tokens) in the slowest rank's median step
    step_s = record["metrics"]["time"]["step"]["median_s"]
    assert record["metrics"]["throughput"]["global_step_tokens_per_s"] == pytest.approx(2 * 2 * 8 / step_s)
    largest = max(ranks, key=lambda r: r["memory"]["peak_step_bytes"])
    assert record["metrics"]["memory"]["peak_step_bytes"] == largest["memory"]["peak_step_bytes"]


def _rank_pid(rank: int, timeout_s: float = 120.0) -> int:
    """The pid of this machine's `rank` of harness.measure.ranks, once it has started measuring (its stage file,
    in the exchange folder its command line names, is past the rendezvous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                env = (proc / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"harness.measure.ranks" not in argv or f"RANK={rank}".encode() not in env:
                continue
            stage = Path(argv[argv.index(b"harness.measure.ranks") + 1].decode()) / f"rank-{rank}.stage"
            if stage.exists() and stage.read_text() not in ("", "rendezvous"):
                return int(proc.name)
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} never started measuring")


@pytest.mark.slow
def test_a_rank_that_fails_gives_one_error_record_naming_it(tmp_path):
    """SIGTERM to rank 1 alone (what a scheduler sends): it raises where it is, torchrun ends rank 0, and the
    sweep writes one error record naming rank 1 and its stage."""
    from harness.run.sweep import run_sweep

    # long enough to be caught while measuring: many timed repeats of a deeper mlp
    overrides = [*MLP, "model.depth=32", "model.width=256", "measure.repeats=2000", "parallel=ddp"]
    killer = threading.Thread(target=lambda: os.kill(_rank_pid(1), signal.SIGTERM), daemon=True)
    killer.start()
    result = run_sweep([overrides], tmp_path / "run", progress=False)
    killer.join(timeout=5)
    assert len(result.records) == 1 and len(list((tmp_path / "run").glob("*.json"))) == 1
    record = result.records[0]
    assert record["status"] == "error"
    assert record["error"]["rank"] == 1 and record["error"]["type"] == "RankTerminated"
    assert record["error"]["message"].startswith(f"rank 1 failed in stage {record['error']['phase']!r}")
    assert record["error"]["rank_stages"]["1"] == record["error"]["phase"]


@pytest.mark.slow
def test_submitit_local_sweep_writes_the_same_records_and_resumes(tmp_path):
    from harness.run.sweep import run_sweep

    cases = [[*MLP, *QUICK, "measure.memory=false"], [*MLP, *QUICK, "measure.memory=false", "model.depth=2"]]
    planned = [make_case(c) for c in cases]
    local = run_sweep(planned, tmp_path / "local", progress=False)
    launcher = plan_launcher(["launcher=submitit_local"], planned)
    jobs = run_sweep(planned, tmp_path / "jobs", progress=False, launcher=launcher)
    assert jobs.job_failures == [] and len(jobs.records) == 2
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 2  # written by the jobs themselves

    def shape(records):
        return sorted((r["config_hash"], r["status"], r["command"], tuple(sorted(r["metrics"]))) for r in records)

    assert shape(jobs.records) == shape(local.records)
    assert len(list((tmp_path / "jobs" / "jobs").glob("*.json"))) == 2  # which job held each case
    again = run_sweep(planned, tmp_path / "jobs", progress=False, launcher=launcher)
    assert again.records == [] and len(again.skipped) == 2  # resumed: nothing submitted
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 2


@pytest.mark.slow
def test_ranks_past_the_time_limit_end_with_one_record_saying_where_each_was(tmp_path):
    from harness.run.sweep import run_sweep

    # 20 s: the case's process stops the ranks at half of it (it keeps the rest to stop them and write the record)
    overrides = [*MLP, "model.depth=32", "model.width=256", "measure.repeats=100000", "parallel=ddp"]
    result = run_sweep([[*overrides, "measure.case_timeout_s=20"]], tmp_path / "run", progress=False)
    (record,) = result.records
    assert record["status"] == "error" and record["error"]["type"] == "CaseTimeout"
    stages = record["error"]["rank_stages"]
    assert set(stages) == {"0", "1"}
    assert record["error"]["message"].startswith("ranks ran past measure.case_timeout_s=20 s and were stopped")
    assert all(f"rank {r}: {s}" in record["error"]["message"] for r, s in stages.items())
