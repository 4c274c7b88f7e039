"""Config: bad input fails before anything is built, with exit code 2 and the dotted key named."""

import pytest

from harness.cli import main
from harness.config.compose import compose_case, plan_cases
from harness.config.groups import ConfigError
from harness.help import run_help


@pytest.mark.parametrize(
    "overrides, key, allowed",
    [
        (["method=foo"], "method", "full_adamw"),
        (["workload.batch_size=0"], "workload.batch_size", "> 0"),
        (["workload.batch_size=-3"], "workload.batch_size", "> 0"),
        (["workload.batch_size=abc"], "workload.batch_size", "Integer"),
        (["model=llama", "model.preset=gpt-9"], "model.preset", "llama-3.1-8b"),
        (["model.depht=3"], "model.depht", "depth"),
        (["model=bert"], "model", "llama, mlp"),
        (["method=qlora", "precision=amp_fp16"], "precision", "amp_bf16"),
        (["model=llama", "checkpointing=on", "checkpointing.segments=2"], "checkpointing.segments", "mlp only"),
        (["checkpointing=on", "checkpointing.segments=100"], "checkpointing.segments", "<= model.depth"),
        (["model=llama", "model.num_heads=5"], "model.num_heads", "divisible"),
        (["measure.repeats=1"], "measure.repeats", ">= 3"),
        (["measure.warmup_steps=1"], "measure.warmup_steps", ">= 2"),
        (["device=tpu"], "device", "cpu"),
        (["method=lora", "method.r=0"], "method.r", "> 0"),
        (["workload.zero_grad=none"], "workload.zero_grad", "set_to_none (gradients freed"),
    ],
)
def test_bad_config_names_key_and_allowed(overrides, key, allowed):
    with pytest.raises(ConfigError) as info:
        compose_case(overrides)
    assert info.value.key == key
    assert allowed in str(info.value)


def test_cli_bad_config_exits_2_naming_key(capsys, tmp_path):
    code = main(["run", "model=llama", "model.preset=nope", f"output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "model.preset" in err and "tiny" in err
    assert not (tmp_path / "out").exists()  # nothing was built or written


def test_cli_cuda_without_gpu_exits_2(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", "device=cuda", f"output_dir={tmp_path}"]) == 2
    assert "device" in capsys.readouterr().err


def test_values_are_not_rewritten():
    cfg = compose_case(["model=llama", "model.hidden_size=96", "method=lora", "method.r=4"])
    assert cfg.model.hidden_size == 96 and cfg.model.num_layers is None  # preset fills at build, not in config
    assert cfg.method.target_modules is None and cfg.method.r == 4


def test_smoke_suite_is_every_method_by_checkpointing_on_two_models():
    cases = plan_cases(["suite=smoke"], multirun=False)
    assert {c.suite for c in cases} == {"smoke"}
    assert len(cases) == 2 * 4 * 2
    as_dicts = [dict(o.split("=", 1) for o in c.overrides) for c in cases]
    combos = {(d["model"], d["method"], d["checkpointing"]) for d in as_dicts}
    assert len(combos) == 16


def test_multirun_crosses_lists_and_user_overrides_win():
    cases = [list(c.overrides) for c in plan_cases(["method=lora,qlora", "workload.batch_size=1,4"], multirun=True)]
    assert sorted(cases) == sorted(
        [
            ["method=lora", "workload.batch_size=1"],
            ["method=lora", "workload.batch_size=4"],
            ["method=qlora", "workload.batch_size=1"],
            ["method=qlora", "workload.batch_size=4"],
        ]
    )
    cases = [c.overrides for c in plan_cases(["suite=smoke", "workload.batch_size=3"], multirun=False)]
    assert all("workload.batch_size=3" in c and "workload.batch_size=2" not in c for c in cases)


def test_run_help_lists_groups_and_documented_fields():
    text = run_help()
    for needle in (
        "qlora",
        "model.preset",
        "method.target_modules",
        "checkpointing.segments",
        "workload.batch_size",
        "measure.repeats",
        "smoke",
    ):
        assert needle in text
    assert main(["run", "--help"]) == 0
