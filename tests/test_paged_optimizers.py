"""bitsandbytes' paged optimizers (method.paged): their state counted by hand, the real optimizer's state beside the
prediction, the refusals, and on a GPU the paged part measured outside PyTorch's allocator.

PagedAdamW keeps two fp32 states per tensor and no step tensor (bitsandbytes counts steps in a Python int);
PagedAdamW8bit keeps AdamW8bit's layout. A state of 100,000 elements or more is paged on CUDA (bitsandbytes
Optimizer8bit.get_state_buffer); on a CPU bitsandbytes pages nothing, with a warning, which is why `bench run`
refuses a paged case there."""

import subprocess
import sys

import pytest
import torch
from support import build, record_in_process

from harness.config.compose import compose_case
from harness.config.groups import ConfigError
from harness.measure.memory import optimizer_paged_bytes, optimizer_state_bytes
from harness.predict import parameters

# width 400: each weight 160,000 elements (paged on CUDA), each bias 400 (in the allocator)
MLP = ["model=mlp", "model.depth=2", "model.width=400", "workload.batch_size=2"]
WEIGHT, BIAS = 400 * 400, 400


def predicted(overrides, device_type="cuda"):
    return parameters.memory(compose_case(["device=cpu", *MLP, *overrides]), device_type)


def test_paged_adamw_state_by_hand():
    mem = predicted(["method=full_adamw", "method.paged=true"])
    # depth 2: two weights and two biases, two fp32 states each, no step tensor
    assert mem["optimizer_bytes"] == 2 * 2 * 4 * (WEIGHT + BIAS)
    assert mem["paged_bytes"] == 2 * 2 * 4 * WEIGHT
    # the allocator holds the biases' states only, each rounded to its 512-byte block; paged state as itself
    assert mem["allocated"]["optimizer_bytes"] == 2 * 2 * 4 * WEIGHT + 2 * 2 * 2048
    # torch's fused AdamW on the same model: the same two states, plus a 4-byte step per tensor, nothing paged
    plain = predicted(["method=full_adamw"])
    assert plain["optimizer_bytes"] == mem["optimizer_bytes"] + 4 * 4 and "paged_bytes" not in plain


def test_paged_adamw8bit_state_by_hand():
    mem = predicted(["method=adamw8bit", "method.paged=true"])
    absmax = 4 * (WEIGHT // 256)  # 625 blocks of 256 per weight, one fp32 absmax each
    qmaps = 2 * 256 * 4
    # weights: two uint8 states (paged) and two absmax; biases below min_8bit_size: two fp32 states
    assert mem["optimizer_bytes"] == 2 * (2 * WEIGHT + 2 * absmax) + 2 * 2 * 4 * BIAS + qmaps
    assert mem["paged_bytes"] == 2 * 2 * WEIGHT
    assert mem["optimizer_bytes"] == predicted(["method=adamw8bit"])["optimizer_bytes"]


def test_lora_adapters_page_only_what_reaches_the_threshold():
    """LoRA r=16 on the 1B's q_proj (2048 x 2048): A and B are 32,768 elements each, below the threshold; on
    up_proj (2048 -> 8192) B is 131,072, paged."""
    overrides = ["model=llama", "model.preset=llama-3.2-1b", "method=lora", "method.paged=true"]
    cfg = compose_case(["device=cpu", *overrides])
    trainable = parameters.trainable_numels(cfg)
    mem = parameters.memory(cfg, "cuda")
    assert mem["paged_bytes"] == sum(2 * 4 * n for n in trainable if n >= 100_000) > 0
    assert min(trainable) < 100_000 <= max(trainable)


@pytest.mark.parametrize("method", ["full_adamw", "adamw8bit"])
def test_the_real_optimizer_holds_what_the_cpu_prediction_says(method):
    """bitsandbytes' own optimizer, one real step on the CPU (where it pages nothing): its state to the byte."""
    cfg, trainable, workload = build([*MLP, f"method={method}", "method.paged=true"])
    assert type(trainable.optimizer).__name__ == {"full_adamw": "PagedAdamW", "adamw8bit": "PagedAdamW8bit"}[method]
    workload.warm_up(1, 0)
    assert optimizer_state_bytes(trainable.optimizer) == parameters.memory(cfg, "cpu")["optimizer_bytes"]
    assert optimizer_paged_bytes(trainable.optimizer) == 0


def test_sgd_cannot_be_paged():
    with pytest.raises(ConfigError, match="method.paged: sgd keeps no optimizer state to page; allowed with"):
        compose_case(["device=cpu", *MLP, "method=sgd", "method.paged=true"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a CPU run")
def test_a_paged_case_on_the_cpu_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", *MLP, "method=full_adamw", "method.paged=true", f"output_dir={out}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "method.paged: a paged optimizer keeps its state in CUDA unified memory" in done.stderr
    assert "allowed here: method.paged=false" in done.stderr
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["full_adamw", "adamw8bit"])
def test_paged_state_is_measured_outside_the_allocator(method):
    record = record_in_process(["device=cuda", *MLP, f"method={method}", "method.paged=true", "measure.repeats=3"])
    assert record["status"] == "ok", record["error"]
    mem, pred = record["metrics"]["memory"], record["predicted"]["memory"]
    assert mem["optimizer_paged_bytes"] == pred["optimizer_paged_bytes"] > 0
    # unified memory is on the device (NVML) but not in PyTorch's allocator
    assert mem["torch_max_allocated_bytes"] + mem["optimizer_paged_bytes"] <= mem["nvml_device_bytes"]
    assert record["resolved"]["optimizer"].startswith("bitsandbytes.optim.Paged")


def test_the_new_field_leaves_earlier_records_hashes_as_they_were():
    """A config that does not page hashes as it did before method.paged existed (its records resume and group
    with earlier ones); a paged one is another configuration."""
    from harness.config.case import config_hash
    from harness.config.compose import make_case

    case = make_case(["device=cpu", *MLP, "method=adamw8bit"])
    stored = case.config_dict
    before = {**stored, "method": {k: v for k, v in stored["method"].items() if k != "paged"}}
    assert stored["method"]["paged"] is False and case.config_hash == config_hash(before)
    paged = make_case(["device=cpu", *MLP, "method=adamw8bit", "method.paged=true"])
    assert paged.config_hash != case.config_hash


def test_a_paged_record_is_its_own_method_in_the_tables(tmp_path):
    """A record of a paged run (here a committed AdamW8bit record with the flag set, as a GPU run writes it) is
    named "(paged)" in the frame every table, plot and verdict reads, and in citations: never merged with the
    plain optimizer's figures."""
    import json

    from harness import repo_root
    from harness.config.case import config_hash
    from harness.records.record import Record
    from harness.records.schema import record_id
    from harness.report.cite import title
    from harness.report.frame import records_frame

    path = next(p for p in sorted((repo_root() / "results" / "records").glob("*/*.json")) if "adamw8bit" in p.name)
    data = json.loads(path.read_text())
    plain = Record.from_dict(data)
    data["config"]["method"]["paged"] = True
    data["config_hash"] = config_hash(data["config"])
    data["id"] = record_id(data["config"], data["provenance"])
    paged = Record.from_dict(data)
    frame = records_frame([plain, paged], tmp_path)
    assert list(frame["method"]) == ["adamw8bit", "adamw8bit (paged)"]
    assert ", adamw8bit (paged), checkpointing" in title(paged)


@pytest.mark.parametrize(
    "where, value, field",
    [(("method", "paged"), "yes", "config.method.paged"), (("model", "head"), "<b>x</b>", "config.model.head")],
)
def test_a_record_with_an_untyped_new_field_is_refused_naming_it(where, value, field):
    """The fields readers branch and label on are typed in the record schema: a stranger's record cannot set them to
    anything else (here on a committed record, re-hashed as a forger would)."""
    import json

    from hostile import forge, set_path

    from harness import repo_root
    from harness.records.validate import RecordInvalid, check

    path = next(p for p in sorted((repo_root() / "results" / "records").glob("*/*.json")) if "hf_" in p.name)
    record = forge(set_path(json.loads(path.read_text()), ("config", *where), value))
    with pytest.raises(RecordInvalid) as err:
        check(record)
    assert err.value.field == field


def test_bench_estimate_prints_the_paged_state_it_counts(capsys):
    """Width 8192: each weight's two fp32 states are 0.5 GiB, paged; the biases' stay in the allocator."""
    import json

    from harness.cli import main

    overrides = ["model=mlp", "model.depth=2", "model.width=8192", "method=full_adamw", "method.paged=true"]
    assert main(["estimate", *overrides, "--format", "json"]) == 0
    paged = json.loads(capsys.readouterr().out)["predicted"]["optimizer_paged_bytes"]
    assert paged == 2 * 2 * 4 * 8192 * 8192
    assert main(["estimate", *overrides]) == 0
    assert "of which 1.00 paged: CUDA unified memory outside PyTorch's allocator" in capsys.readouterr().out
