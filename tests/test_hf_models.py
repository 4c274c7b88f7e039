"""model=hf: presets against their published parameter counts, parameters predicted = parameters built for every
family, LoRA's trainable count by hand for each family's default targets, and bad input refused with exit code 2."""

import json

import pytest
from support import build

from harness.cli import main
from harness.families.hf_inventory import build_inventory, config_key, shipped_inventories
from harness.families.hf_presets import ALL_HF_PRESETS, HF_PRESETS
from harness.predict import analytic

# Each release's total as its model card or paper states it (in billions, rounded as published), and the exact
# count the model built on the meta device gives (which the rounding must match).
PUBLISHED = {
    "llama-3.2-1b": (1.24, 1_235_814_400),
    "llama-3.2-3b": (3.21, 3_212_749_824),
    "llama-3.1-8b": (8.03, 8_030_261_248),
    "llama-3.1-70b": (70.6, 70_553_706_496),
    "qwen2.5-0.5b": (0.49, 494_032_768),
    "qwen2.5-7b": (7.62, 7_615_616_512),
    "qwen2.5-14b": (14.7, 14_770_033_664),
    "qwen3-8b": (8.2, 8_190_735_360),
    "mistral-7b-v0.3": (7.25, 7_248_023_552),
    "gemma-2-2b": (2.61, 2_614_341_888),
    "gemma-2-9b": (9.24, 9_241_705_984),
    "phi-3-mini": (3.8, 3_821_079_552),
    "gpt2": (0.124, 124_439_808),
    "gpt2-xl": (1.56, 1_557_611_200),
    # the BERT paper's 110M and 340M (Devlin et al. 2019), built as BertForSequenceClassification with 2 labels
    # (model.head's default for bert: the pooler and a 2-way classifier on top of the encoder)
    "bert-base-uncased": (0.11, 109_483_778),
    "bert-large-uncased": (0.34, 335_143_938),
}
FAMILIES = [
    "tiny-llama",
    "tiny-qwen2",
    "tiny-qwen3",
    "tiny-mistral",
    "tiny-gemma2",
    "tiny-phi3",
    "tiny-gpt2",
    "tiny-bert",
]


def total(inventory: dict) -> int:
    return sum(numel * count for _, numel, *_, count in inventory["tensors"])


@pytest.mark.parametrize("preset", list(HF_PRESETS))
def test_presets_count_their_published_parameters_on_the_meta_device(preset):
    built = build_inventory(HF_PRESETS[preset])
    published, exact = PUBLISHED[preset]
    assert total(built) == exact
    digits = len(str(published).split(".")[1])
    assert published in (round(exact / 1e9, digits), int(exact / 10 ** (9 - digits)) / 10**digits)  # Qwen truncates
    # the shipped inventory (what bench estimate reads without torch) is what the meta device builds
    assert shipped_inventories()[config_key(HF_PRESETS[preset])] == built


def test_every_preset_is_shipped():
    assert set(shipped_inventories()) == {config_key(data) for data in ALL_HF_PRESETS.values()}


@pytest.mark.parametrize("preset", FAMILIES)
def test_parameters_predicted_equal_parameters_built(preset):
    cfg, trainable, _ = build(["model=hf", f"model.preset={preset}"])
    predicted = analytic.memory(cfg)
    params = {id(p): p for p in trainable.model.parameters()}.values()
    assert predicted["total_params"] == sum(p.numel() for p in params)
    assert predicted["params_bytes"] == sum(p.numel() * p.element_size() for p in params)


def hand_lora_count(config: dict, r: int) -> int:
    """r·Σ(d_in + d_out) over every linear of attention and MLP, from the config.json's own fields."""
    if config["model_type"] == "gpt2":
        h = config["n_embd"]
        ff = config.get("n_inner") or 4 * h
        linears = [(h, 3 * h), (h, h), (h, ff), (ff, h)]  # c_attn, attn.c_proj, c_fc, mlp.c_proj
        layers = config["n_layer"]
    elif config["model_type"] == "bert":
        h, ff = config["hidden_size"], config["intermediate_size"]
        linears = [(h, h)] * 4 + [(h, ff), (ff, h)]  # query, key, value, attention.output.dense, intermediate, output
        # peft matches a target by its leaf name anywhere in the model: the pooler's dense is adapted too
        return config["num_hidden_layers"] * sum(r * (i + o) for i, o in linears) + r * (h + h)
    else:
        h, ff = config["hidden_size"], config["intermediate_size"]
        nh, kv = config["num_attention_heads"], config["num_key_value_heads"]
        q, k = nh * config.get("head_dim", h // nh), kv * config.get("head_dim", h // nh)
        if config["model_type"] == "phi3":  # qkv_proj, o_proj, gate_up_proj, down_proj
            linears = [(h, q + 2 * k), (q, h), (h, 2 * ff), (ff, h)]
        else:  # q, k, v, o, gate, up, down
            linears = [(h, q), (h, k), (h, k), (q, h), (h, ff), (h, ff), (ff, h)]
        layers = config["num_hidden_layers"]
    return layers * sum(r * (d_in + d_out) for d_in, d_out in linears)


@pytest.mark.parametrize("preset", FAMILIES)
def test_lora_trains_r_times_the_sum_of_in_and_out_over_default_targets(preset):
    cfg, trainable, _ = build(["model=hf", f"model.preset={preset}", "method=lora", "method.r=8"])
    expected = hand_lora_count(ALL_HF_PRESETS[preset], 8)
    assert sum(p.numel() for p in trainable.model.parameters() if p.requires_grad) == expected
    assert analytic.memory(cfg)["trainable_params"] == expected


def test_a_config_json_builds_what_the_preset_builds(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(ALL_HF_PRESETS["tiny-qwen3"]))
    from_file = build(["model=hf", f"model.config={tmp_path}"])[0]
    from_preset = build(["model=hf", "model.preset=tiny-qwen3"])[0]
    assert analytic.memory(from_file) == analytic.memory(from_preset)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.preset=gpt-9"], "model.preset: unknown preset 'gpt-9'; allowed: llama-3.2-1b"),
        ([], "model.preset: model=hf needs exactly one of model.preset=NAME"),
        (["model.config=/nonexistent/config.json"], "model.config: no config.json at '/nonexistent/config.json'"),
        (["model.preset=gemma-2-2b", "model.attn_implementation=sdpa"], "does not support sdpa; allowed: eager"),
        (["model.preset=gpt2", "model.num_kv_heads=2"], "model.num_kv_heads: gpt2 has no such field; allowed here"),
        (["model.preset=gpt2", "model.attn_implementation=flash"], "model.attn_implementation: unknown 'flash'"),
        (
            ["model.preset=tiny-llama", "model.head=masked_lm"],
            "model.head: 'masked_lm' is no head of model_type 'llama'; allowed for llama: causal_lm (encoders bert: "
            "sequence_classification, masked_lm; every other model_type: causal_lm)",
        ),
        (
            ["model.preset=tiny-bert", "model.head=causal_lm"],
            "model.head: 'causal_lm' is no head of model_type 'bert'; allowed for bert: sequence_classification, "
            "masked_lm",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_key(overrides, message, capsys):
    assert main(["estimate", "model=hf", *overrides]) == 2
    assert message in capsys.readouterr().err


def test_an_encoder_decoder_config_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    assert main(["run", "--cfg", "model=hf", f"model.config={tmp_path / 'config.json'}"]) == 2
    assert "model.config: 't5' is an encoder-decoder model (is_encoder_decoder: true)" in capsys.readouterr().err
    # an encoder with no head here (only bert has model.head choices) is refused by its architectures
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]})
    )
    assert main(["run", "--cfg", "model=hf", f"model.config={tmp_path / 'config.json'}"]) == 2
    assert "has no causal LM" in capsys.readouterr().err
