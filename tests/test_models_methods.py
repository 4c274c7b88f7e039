"""The real parts: peft LoRA counts, NF4 weights, 8-bit optimizer state, checkpointing."""

import torch
from support import build, saved_for_backward_bytes

from harness.families.llama import shape as resolve_llama_shape


def _adapted_layer_dims_llama(cfg):
    s = resolve_llama_shape(cfg.model)
    d, kv = s["hidden_size"], s["hidden_size"] // s["num_heads"] * s["num_kv_heads"]
    ff = s["intermediate_size"]
    per_layer = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down
    return per_layer * s["num_layers"]


def test_lora_trainable_is_r_times_sum_of_dims_llama():
    cfg, trainable, _ = build(["model=llama", "method=lora", "method.r=8"])
    expected = 8 * sum(i + o for i, o in _adapted_layer_dims_llama(cfg))
    assert expected == 8 * 2 * (128 + 96 + 96 + 128 + 240 + 240 + 240)  # tiny: d=64, kv=32, ff=176
    assert sum(p.numel() for p in trainable.model.parameters() if p.requires_grad) == expected


def test_lora_trainable_is_r_times_sum_of_dims_mlp_and_subset_targets():
    _, trainable, _ = build(["model=mlp", "model.depth=5", "model.width=128", "method=lora", "method.r=4"])
    assert sum(p.numel() for p in trainable.model.parameters() if p.requires_grad) == 4 * 5 * (128 + 128)
    cfg, trainable, _ = build(["model=llama", "method=lora", "method.r=2", "method.target_modules=[q_proj,v_proj]"])
    assert trainable.resolved["target_modules"] == ["q_proj", "v_proj"]
    assert sum(p.numel() for p in trainable.model.parameters() if p.requires_grad) == 2 * 2 * ((64 + 64) + (64 + 32))


def test_qlora_llama_loads_nf4_through_from_pretrained():
    import bitsandbytes as bnb

    _, trainable, _ = build(["model=llama", "method=qlora"])
    assert trainable.resolved["loading_path"].startswith("save_pretrained")
    linears = [m for m in trainable.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 7 * 2
    for module in linears:
        w = module.weight
        assert w.dtype == torch.uint8 and w.quant_state.quant_type == "nf4" and w.quant_state.nested
        # two 4-bit weights per byte
        assert w.numel() * 2 == torch.Size(w.quant_state.shape).numel()
        assert not w.requires_grad


def test_qlora_mlp_weights_are_4bit():
    import bitsandbytes as bnb

    _, trainable, _ = build(["model=mlp", "model.depth=3", "model.width=128", "method=qlora"])
    linears = [m for m in trainable.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 3
    assert all(m.weight.dtype == torch.uint8 and m.weight.numel() == 128 * 128 // 2 for m in linears)


def test_adamw8bit_state_is_uint8_above_min_size():
    cfg, trainable, workload = build(["model=mlp", "model.depth=2", "model.width=128", "method=adamw8bit"])
    workload.step()
    for p in trainable.model.parameters():
        state = trainable.optimizer.state[p]
        if p.numel() >= cfg.method.min_8bit_size:  # 128x128 weights
            assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
            assert state["state1"].numel() == p.numel()
        else:  # 128-element biases keep 32-bit state
            assert state["state1"].dtype == torch.float32


def test_checkpointing_reduces_tensors_saved_for_backward_mlp():
    _, _, off = build(["model=mlp", "model.depth=16", "model.width=64"])
    _, _, on = build(["model=mlp", "model.depth=16", "model.width=64", "checkpointing=on"])
    unit = 2 * 64 * 64 * 4  # batch 2 x seq 64 rows of 64 fp32 features
    # off: the input, 16 ReLU outputs, the loss's difference tensor
    assert saved_for_backward_bytes(off) == (16 + 2) * unit
    # on, 4 segments: 4 segment inputs (3 checkpointed segments + the last, run normally), its 4 outputs, the loss
    assert saved_for_backward_bytes(on) == (4 + 4 + 1) * unit


def test_checkpointing_reduces_tensors_saved_for_backward_llama():
    _, _, off = build(["model=llama", "model.num_layers=4"])
    _, _, on = build(["model=llama", "model.num_layers=4", "checkpointing=on"])
    assert saved_for_backward_bytes(on) < 0.6 * saved_for_backward_bytes(off)
