"""bf16 QLoRA (method=qlora precision=bf16, torchtune's and unsloth's variant) beside the upcast one (peft's
prepare_model_for_kbit_training): the weights bitsandbytes does not quantize and the adapters in bf16, measured on
CPU with torch's MemTracker against the prediction. Parameters, gradients and optimizer state to the byte (and by
hand for the mlp); activations and each moment of the step as exact as the upcast QLoRA's tests hold them: the
decoders' activations within 5% (tests/test_hf_activations.py; measured: within 0.01%), every moment to the byte for
the mlp and model=llama and within 2% for model=hf (tests/test_peak_moments.py; measured: to the byte)."""

import pytest
import torch
from moments import measured_moments
from support import build, measure_memory_as_case
from test_hf_activations import measured_activations
from test_peak_moments import predicted_moments

from harness.config.compose import compose_case, make_case
from harness.config.groups import ConfigError
from harness.config.rules import QLORA_VARIANTS
from harness.measure.attention import kernels_used
from harness.measure.traced import traced_activations, traced_config
from harness.predict import analytic
from harness.predict.estimate_defaults import assumed_overrides

BF16 = ["method=qlora", "precision=bf16"]
MLP = ["model=mlp", "model.depth=4", "model.width=64", "workload.batch_size=2", "workload.seq_len=8"]
DECODER = ["workload.batch_size=2", "workload.seq_len=32"]
# (overrides, tolerance of the activations, tolerance of every moment): measured / predicted - 1
CASES = [
    (MLP, 0, 0),
    ([*MLP, "checkpointing=on"], 0, 0),
    (["model=llama", *DECODER], 0.05, 0),
    (["model=llama", *DECODER, "checkpointing=on"], 0.05, 0),
    (["model=hf", "model.preset=tiny-phi3", *DECODER], 0.05, 0.02),
    (["model=hf", "model.preset=tiny-qwen3", *DECODER, "checkpointing=on"], 0.05, 0.02),
]
VARIANT = "bf16: non-quantized weights and adapters in bf16 (torchtune's)"
UPCAST = "upcast: prepare_model_for_kbit_training, non-quantized weights and adapters fp32"


def test_fp16_qlora_is_refused_naming_each_allowed_precision_and_what_it_means():
    with pytest.raises(ConfigError) as info:
        compose_case(["method=qlora", "precision=amp_fp16"])
    assert info.value.key == "precision"
    message = str(info.value)
    assert "'amp_fp16' is not allowed" in message
    for precision in ("fp32", "amp_bf16", "bf16"):
        assert f"{precision} ({QLORA_VARIANTS[precision]})" in message
    assert compose_case(BF16).precision.name == "bf16"


@pytest.mark.parametrize("precision, variant, dtype", [("bf16", VARIANT, "bfloat16"), ("fp32", UPCAST, "float32")])
def test_the_record_names_the_variant_and_the_dtypes_it_left(precision, variant, dtype):
    _, trainable, _ = build(["model=llama", "method=qlora", f"precision={precision}", "checkpointing=on"])
    resolved = trainable.resolved
    assert resolved["qlora_variant"] == variant
    assert resolved["weight_dtype"] == resolved["adapter_dtype"] == dtype
    assert ("prepare_model_for_kbit_training" in resolved) == (precision == "fp32")
    floats = {p.dtype for p in trainable.model.parameters() if p.is_floating_point()}
    assert floats == {getattr(torch, dtype)}  # embeddings, norms, lm_head and adapters alike
    quantized = [p for p in trainable.model.parameters() if getattr(p, "quant_state", None) is not None]
    assert len(quantized) == 7 * trainable.model.config.num_hidden_layers  # every linear of every layer
    # what prepare_model_for_kbit_training does that training needs, kept: checkpointing, and the embedding output
    # requiring grad (else no gradient reaches the adapters through a checkpointed layer)
    embeddings = trainable.model.get_input_embeddings()
    ids = torch.zeros(1, 4, dtype=torch.long)
    assert resolved["checkpointing"].startswith("transformers gradient_checkpointing_enable")
    assert embeddings(ids).requires_grad


def test_the_mlp_state_is_counted_by_hand():
    """Two NF4 layers of 64 x 64 with double quantization, bf16 biases, bf16 LoRA adapters (r = 16) and AdamW's
    state in the adapters' dtype, by hand; measured and predicted alike."""
    cfg, _, workload = build(["model=mlp", "model.depth=2", "model.width=64", *BF16, "measure.flops=false"])
    nf4 = 4096 // 2 + 4096 // 64 + 4 * 1 + (16 * 4 + 256 * 4 + 4)  # codes, absmax, nested absmax, constants
    adapters = 16 * 64 + 64 * 16  # A and B of one layer
    hand = {
        "params_bytes": 2 * (nf4 + 64 * 2 + adapters * 2),
        "grads_bytes": 2 * adapters * 2,
        "optimizer_bytes": 2 * (2 * adapters * 2 + 2 * 4),  # exp_avg, exp_avg_sq in bf16; a 4-byte step per tensor
    }
    measured = measure_memory_as_case(workload)
    predicted = analytic.predict(cfg, "cpu")["memory"]
    for name, value in hand.items():
        assert measured[name] == predicted[name] == value, name


@pytest.mark.parametrize(
    "overrides, act_tolerance, moment_tolerance", CASES, ids=lambda o: " ".join(o[1:]) if isinstance(o, list) else None
)
def test_measured_against_predicted(overrides, act_tolerance, moment_tolerance):
    cfg, _, workload = build([*overrides, *BF16])
    kernel = (kernels_used(workload) or {}).get("fwd_train")
    predicted = analytic.predict(cfg, "cpu", kernel)["memory"]
    measured = measure_memory_as_case(workload)
    for name in ("params_bytes", "grads_bytes", "optimizer_bytes"):
        assert measured[name] == predicted[name], name
    activations = analytic.activations(cfg, kernel, "cpu")
    error = measured_activations(workload) / activations["activations_bytes"] - 1
    assert abs(error) <= act_tolerance, f"{error:+.2%}: {activations['formula']}"
    moments, got = predicted_moments(cfg, workload), measured_moments(workload)
    for moment, value in moments["moments"].items():
        if value is not None:
            error = got[moment] / value - 1
            assert abs(error) <= moment_tolerance, f"{moment}: measured {got[moment]}, predicted {value}"
    assert max(got[m] for m, v in moments["moments"].items() if v is not None) == pytest.approx(
        moments["peak_step_bytes"], rel=moment_tolerance, abs=0
    )


def test_the_trace_runs_bf16_lora_and_refuses_autocast():
    cfg = make_case(["model=llama", *DECODER, *BF16]).config
    traced, how = traced_config(cfg)
    assert (traced.method.name, traced.precision.name) == ("lora", "bf16")
    assert how.startswith("traced as LoRA on a bf16 model")
    assert traced_config(make_case(["model=llama", "method=qlora", "precision=amp_bf16"]).config)[0] is None
    # the trace stands for the measurement: within the record's 10% for traced figures
    _, _, workload = build(["model=llama", *DECODER, *BF16])
    measured = measured_activations(workload)
    assert measured == pytest.approx(traced_activations(cfg)["activations_bytes"], rel=0.10)


def test_estimate_keeps_the_upcast_variant_for_a_bf16_release_and_names_the_other():
    cfg = make_case(["model=hf", "model.preset=qwen2.5-7b", "method=qlora"]).config
    extra, said = assumed_overrides(cfg, {"model", "model.preset", "method"})
    assert not any(o.startswith("precision=") for o in extra)
    assert said[0].startswith("fp32 outside the 4-bit weights (QLoRA's upcast variant") and "precision=bf16" in said[0]
