"""Memory breakdown and FLOP counts against hand counts, on small CPU cases."""

import pytest
import torch
from support import build, measure_memory_as_case

from harness.measure.flops import measure_flops


def _measure(overrides):
    cfg, trainable, workload = build(overrides)
    return cfg, trainable, measure_memory_as_case(workload), measure_flops(workload)


@pytest.mark.parametrize("depth", [4, 8, 16])
def test_flop_ratio_is_three_minus_one_over_depth(depth):
    _, _, _, flops = _measure(["model=mlp", f"model.depth={depth}", "model.width=64", "measure.memory=false"])
    # fwd: 2*N*W*W per layer; bwd: weight grads everywhere, input grads everywhere but the first layer
    n = 2 * 64
    assert flops["fwd_train"] == depth * 2 * n * 64 * 64
    assert flops["fwd_bwd"] / flops["fwd_train"] == pytest.approx(3 - 1 / depth, abs=1e-12)


def test_flop_ratio_above_3_5_with_checkpointing_and_model_flops_exclude_recompute():
    _, _, _, flops = _measure(["model=mlp", "model.depth=16", "model.width=64", "checkpointing=on"])
    assert flops["fwd_bwd"] / flops["fwd_train"] > 3.5
    assert flops["fwd_bwd_model"] / flops["fwd_train"] == pytest.approx(3 - 1 / 16)
    # 4 segments, the last not checkpointed: 12 of 16 layers' forwards run again
    assert flops["recomputed"] == 12 * 2 * 128 * 64 * 64


def test_mlp_activation_bytes_match_hand_count():
    depth, width = 32, 128
    _, _, mem, _ = _measure(["model=mlp", f"model.depth={depth}", f"model.width={width}", "measure.flops=false"])
    unit = 2 * 64 * width * 4
    hand = depth * unit  # one ReLU output per layer (each also the next Linear's input)
    assert mem["activations_bytes"] == pytest.approx(hand, rel=0.07)
    # exactly: plus the network input (saved by the first Linear) and the loss's difference tensor
    assert mem["activations_bytes"] == (depth + 2) * unit


def test_adamw_optimizer_bytes_are_8_per_trainable_fp32_parameter():
    _, trainable, mem, _ = _measure(["model=mlp", "model.depth=4", "model.width=128", "measure.flops=false"])
    params = list(trainable.model.parameters())
    n = sum(p.numel() for p in params)
    assert mem["optimizer_bytes"] == 8 * n + 4 * len(params)  # exp_avg + exp_avg_sq, and a 4-byte step per tensor
    assert mem["grads_bytes"] == 4 * n and mem["params_bytes"] == 4 * n


def test_adamw8bit_is_about_a_quarter_for_large_tensors():
    overrides = ["model=mlp", "model.depth=4", "model.width=256", "model.bias=false", "measure.flops=false"]
    _, _, full, _ = _measure(overrides)
    _, _, eight, _ = _measure([*overrides, "method=adamw8bit"])
    ratio = eight["optimizer_bytes"] / full["optimizer_bytes"]
    # 2 B of state per parameter + per-block absmax + shared quantization maps, against 8 B
    assert 0.25 <= ratio < 0.27


def test_lora_has_zero_gradient_bytes_for_frozen_base():
    _, trainable, mem, _ = _measure(["model=llama", "method=lora", "method.r=4", "measure.flops=false"])
    adapters = [p for n, p in trainable.model.named_parameters() if "lora_" in n]
    assert all(p.requires_grad for p in adapters)
    assert mem["grads_bytes"] == sum(p.numel() * p.element_size() for p in adapters)
    base = [p for n, p in trainable.model.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base)


def test_qlora_params_bytes_count_quant_state_exactly():
    _, trainable, mem, _ = _measure(
        ["model=mlp", "model.depth=2", "model.width=256", "method=qlora", "measure.flops=false"]
    )
    weights = [p for p in trainable.model.parameters() if getattr(p, "quant_state", None) is not None]
    assert len(weights) == 2
    packed = sum(w.numel() for w in weights)  # uint8: two NF4 values per byte
    assert packed == 2 * 256 * 256 // 2
    assert mem["quantization_state_bytes"] > 0
    per_weight = (packed + mem["quantization_state_bytes"]) / (2 * 256 * 256)
    assert 0.5 < per_weight < 0.6  # QLoRA paper: about 0.516 B per weight with double quantization


def test_training_peak_exceeds_inference_peak():
    _, _, mem, _ = _measure(["model=llama", "measure.flops=false"])
    assert mem["peak_step_bytes"] > mem["peak_infer_bytes"] > mem["params_bytes"]
    assert mem["train_to_infer_memory_ratio"] == mem["peak_step_bytes"] / mem["peak_infer_bytes"]
    assert mem["rss_peak_bytes"] > 0


def test_rss_peak_sees_a_known_allocation():
    from harness.measure.trackers import RssPeak

    rss = RssPeak()
    size = 256 * 1024**2
    rss.start()
    baseline = RssPeak._read("VmRSS")
    block = torch.ones(size // 4)  # 256 MiB, touched
    del block
    peak = rss.stop()
    assert peak - baseline >= 0.95 * size
    rss.start()
    assert rss.stop() < peak  # the high-water mark was reset between phases


def test_qlora_flop_counts_are_marked_partial_and_give_no_ratio():
    from harness.measure.flops import flop_ratios

    _, _, _, flops = _measure(["model=mlp", "model.depth=2", "model.width=64", "method=qlora", "measure.memory=false"])
    assert flops["complete"] is False and "bitsandbytes" in flops["incomplete_reason"]
    assert flop_ratios(flops) == {"flop_ratio": None, "model_flop_ratio": None}
