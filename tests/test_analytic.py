"""The analytic model against hand counts, and against measurements of small CPU cases."""

import pytest
from support import build, measure_memory_as_case

from harness.config.groups import BenchConfig
from harness.predict import analytic


def _config(overrides):
    cfg, trainable, workload = build(overrides)
    return cfg, workload


def test_hand_counts_of_parameters_state_and_lora():
    config, _ = _config(["model=mlp", "model.depth=4", "model.width=128"])
    n = 4 * (128 * 128 + 128)
    mem = analytic.memory(config)
    assert mem["params_bytes"] == mem["grads_bytes"] == 4 * n
    assert mem["optimizer_bytes"] == 8 * n + 4 * 8  # exp_avg + exp_avg_sq; a 4-byte step for each of 8 tensors
    # 8-bit: 2 B/element + 8 B per 256-block for the four 16384-element weights; biases (< 4096) stay fp32;
    # one shared pair of 256-entry fp32 quantization maps
    config8, _ = _config(["model=mlp", "model.depth=4", "model.width=128", "method=adamw8bit"])
    assert analytic.memory(config8)["optimizer_bytes"] == 4 * (2 * 16384 + 8 * 64) + 4 * 8 * 128 + 2048
    # LoRA r=16 on 4 square 128-wide linears: 16 * (128 + 128) each
    lora, _ = _config(["model=mlp", "model.depth=4", "model.width=128", "method=lora"])
    assert analytic.lora_parameter_count(lora) == 4 * 16 * 256
    # NF4 + double quantization: ~0.516 B per weight (QLoRA §3) for a large tensor
    assert analytic.nf4_bytes(4096 * 4096) / (4096 * 4096) == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256), abs=1e-4)


def test_seed_figures_from_published_shapes():
    base = {
        "precision": {"name": "bf16"},
        "checkpointing": {"enabled": False},
        "workload": {"batch_size": 1, "seq_len": 512},
    }
    seven = dict(
        base,
        model={"name": "llama", "preset": "llama-2-7b", "attn_implementation": "sdpa"},
        method={"name": "full_adamw", "r": 16, "target_modules": None, "min_8bit_size": 4096},
    )
    assert analytic.memory(BenchConfig.from_dict(seven))["total_params"] == 6_738_415_616  # Llama 2 7B, as published
    big = dict(seven, model={"name": "llama", "preset": "llama-3.1-405b"}, method=dict(seven["method"], name="lora"))
    assert analytic.lora_parameter_count(BenchConfig.from_dict(big)) == pytest.approx(0.623e9, rel=0.01)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=mlp"],
        ["model=mlp", "precision=bf16"],
        ["model=mlp", "method=lora"],
        ["model=mlp", "model.depth=16", "checkpointing=on"],
        ["model=llama"],
        ["model=llama", "precision=bf16"],
        ["model=llama", "model.attn_implementation=eager"],
        ["model=llama", "method=adamw8bit"],
        ["model=llama", "method=lora"],
        ["model=llama", "method=qlora"],
        ["model=mlp", "precision=amp_bf16"],
        ["model=llama", "method=lora", "precision=bf16"],
        ["model=llama", "method=lora", "model.attn_implementation=eager", "model.num_layers=3"],
    ],
)
def test_prediction_matches_measurement_of_small_cpu_cases(overrides):
    config, workload = _config([*overrides, "measure.flops=false"])
    measured = measure_memory_as_case(workload)
    predicted = analytic.predict(config)
    for key in ("params_bytes", "grads_bytes", "optimizer_bytes"):
        assert measured[key] == predicted["memory"][key], key
    act = predicted["memory"]["activations_bytes"]
    if act is not None:  # derived exactly for these cases: no tolerance needed here
        assert measured["activations_bytes"] == pytest.approx(act, abs=16), predicted["formulas"]
    assert all(c["agrees"] for c in analytic.compare(predicted, {"memory": measured}))


def test_a_disagreement_is_flagged_in_the_record():
    from harness.records.predicted import attach_prediction

    config, _ = _config(["model=mlp"])
    predicted = analytic.predict(config)["memory"]
    record = {
        "config": config.to_dict(),
        "metrics": {"memory": dict(predicted, activations_bytes=2 * predicted["activations_bytes"])},
    }
    attach_prediction(record)
    assert record["flags"]["predicted_disagrees"] == ["activations_bytes"]
    [act] = [c for c in record["predicted"]["comparison"] if c["name"] == "activations_bytes"]
    assert act["relative_error"] == pytest.approx(1.0) and act["agrees"] is False


def test_every_claim_of_references_section_5_has_a_registry_entry_and_a_judge():
    from harness.report import claims

    registry = claims.load_registry()
    assert [c["id"] for c in registry] == list(range(1, 14))  # 1-12 from §5; 13 (ZeRO sharding) from seed 002
    for claim in registry:
        assert claim["judge"]["kind"] in claims.JUDGES
        assert claim["statement"] and claim["seed"] and claim["condition"]
    results = claims.evaluate(claims.empty_groups(), registry)
    analytic_only = {r["id"]: r["verdict"] for r in results if r["hardware"].startswith("analytic")}
    assert analytic_only == {
        4: f"{claims.CONDITIONAL}: 14 GB of fp16 parameters; 56 GB of fp32 Adam states (the same document's table)",
        9: claims.FAILS,
    }


def test_gradient_diagnostics_against_direct_computation():
    import torch

    from harness.measure.gradients import FD_ENTRIES, layer_gradient_norms, measure_gradients

    def diagnostics(extra):
        cfg, trainable, workload = build(
            [
                "model=mlp",
                "model.depth=16",
                "model.width=32",
                "method=sgd",
                "workload.batch_size=2",
                "workload.seq_len=8",
                *extra,
            ]
        )
        workload.warm_up(2, 0)
        return workload, measure_gradients(workload, "sgd")

    workload, plain = diagnostics(["model.activation=sigmoid"])
    # the norms are each layer's gradient norm, recomputed here directly
    workload.backward(workload.forward_loss())
    direct = [
        torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item() for block in workload.model.layers
    ]
    assert layer_gradient_norms(workload.model) == pytest.approx(direct, rel=1e-6)  # float64 sums vs float32 norm
    n = 16 * (32 * 32 + 32)
    assert plain["trainable_params"] == n and plain["fd_full_gradient_forward_passes"] == 2 * n
    assert plain["fd_checked_entries"] == FD_ENTRIES and plain["fd_forward_passes"] == 2 * FD_ENTRIES
    assert plain["first_to_last_layer_grad_norm_ratio"] < 1e-3  # sigmoid: vanishing with depth
    _, stable = diagnostics(["model.activation=tanh", "model.residual=true", "model.norm=true"])
    assert 0.1 < stable["first_to_last_layer_grad_norm_ratio"] < 10
    assert stable["fd_agrees"] and stable["fd_max_rel_error"] < 1e-6  # smooth network: central differences agree


@pytest.mark.parametrize(
    "overrides, hand",
    [
        (["model=mlp", "model.depth=8", "model.width=64"], 3 - 1 / 8),
        # 3 segments of 2 layers (round(sqrt 8) = 3 -> 8 // 3 = 2), the last not checkpointed: 4 of 8 recomputed
        (["model=mlp", "model.depth=8", "model.width=64", "checkpointing=on"], 3 - 1 / 8 + 4 / 8),
        (["model=llama"], 3.0),
    ],
)
def test_predicted_flop_ratio_is_the_hand_count_and_the_counted_one(overrides, hand):
    from harness.measure.flops import flop_ratios, measure_flops

    config, workload = _config([*overrides, "measure.memory=false"])
    predicted = analytic.flop_ratio(config)["flop_ratio"]
    assert predicted == pytest.approx(hand, abs=1e-12)
    workload.warm_up(2, 0)
    assert flop_ratios(measure_flops(workload))["flop_ratio"] == pytest.approx(predicted, rel=1e-9)
