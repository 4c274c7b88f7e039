"""model=hf encoders (BERT) with model.head: the labels each head's loss reads, the traced activations against the
tracker's measurement on CPU (to the byte), the step's peak within 3%, and the loss backward's moment counted by
hand for each head (b x labels logits for a classifier, t x V for a masked LM)."""

import json

import pytest
import torch
from moments import measured_moments
from support import build
from test_hf_activations import measured_activations

from harness.cli import main
from harness.families.hf_presets import TINY_PRESETS
from harness.measure.traced import traced_activations
from harness.predict import analytic, estimate, timeline
from harness.predict.allocator import allocated_bytes

B, S = 2, 32
TINY = ["model=hf", "model.preset=tiny-bert", f"workload.batch_size={B}", f"workload.seq_len={S}"]
SETUPS = [
    [],
    ["method=lora"],
    ["checkpointing=on"],
    ["method=lora", "checkpointing=on"],
    ["model.head=masked_lm"],
    ["precision=bf16"],
    ["method=adamw8bit"],  # traced with torch's AdamW: bitsandbytes' cannot be built on fake tensors
    ["workload.zero_grad=zeros"],  # the published BERT rows' loop: every gradient live through the forward
    ["workload.zero_grad=zeros", "checkpointing=on"],
]


def test_each_head_builds_its_class_and_reads_its_labels():
    cfg, trainable, workload = build(TINY)
    assert type(trainable.model).__name__ == "BertForSequenceClassification"
    assert trainable.resolved["head"] == "sequence_classification"
    # the same seeded draws as a causal LM's ids, then one class id per sequence
    gen = torch.Generator().manual_seed(cfg.workload.seed)
    ids = torch.randint(0, TINY_PRESETS["tiny-bert"]["vocab_size"], (B, S), generator=gen)
    assert torch.equal(workload.inputs["input_ids"], ids) and "use_cache" not in workload.inputs
    assert torch.equal(workload.train_kwargs["labels"], torch.randint(0, 2, (B,), generator=gen))
    assert workload.forward_loss().shape == ()
    _, mlm, workload = build([*TINY, "model.head=masked_lm"])
    assert type(mlm.model).__name__ == "BertForMaskedLM"
    assert workload.train_kwargs["labels"] is workload.inputs["input_ids"]  # every position predicted


@pytest.mark.parametrize("extra", SETUPS, ids=lambda o: " ".join(o) or "full_adamw")
def test_the_trace_is_the_trackers_measurement_and_the_peak_within_3_percent(extra):
    cfg, _, workload = build([*TINY, *extra])
    traced = traced_activations(cfg)
    assert measured_activations(workload) == traced["activations_bytes"], traced["formula"]
    fixed = timeline.fixed_parts(cfg, analytic.predict(cfg, "cpu")["memory_allocated"], "cpu")
    predicted = timeline.step_moments(cfg, fixed, traced)["peak_step_bytes"]
    measured = max(measured_moments(build([*TINY, *extra])[2]).values())
    assert measured == pytest.approx(predicted, rel=0.03)


@pytest.mark.parametrize("head, logits", [("sequence_classification", B * 2), ("masked_lm", B * S * 512)])
def test_the_loss_backward_adds_two_fp32_logit_tensors_of_the_head(head, logits):
    """log_softmax's output gradient and its input gradient, each as large as the fp32 logits (b x 2 classes, or
    t x 512 tokens); neither head's loss copies its labels (a causal LM's shifts them)."""
    cfg = build([*TINY, f"model.head={head}"])[0]
    fixed = timeline.fixed_parts(cfg, analytic.predict(cfg, "cuda")["memory_allocated"], "cuda")
    moments = timeline.step_moments(cfg, fixed, {"activations_bytes": 10**6})["moments"]
    assert moments["loss backward"] - moments["end of forward"] == 2 * allocated_bytes(logits * 4, "cuda")


def test_bert_large_estimate_answers_traced(capsys):
    args = ["method=full_adamw", "precision=fp32", "workload.batch_size=4", "workload.seq_len=512"]
    assert main(["estimate", "model=hf", "model.preset=bert-large-uncased", *args]) == 0
    out = capsys.readouterr().out
    assert "traced: the model and method under FakeTensorMode" in out and "extrapolated to 24" in out


def test_an_encoders_inference_is_not_derived():
    cfg = build(TINY)[0]
    assert estimate.inference(cfg, 0)["peak_infer_bytes"] is None


def test_a_case_without_model_head_hashes_as_before_the_field():
    """Committed model=hf records were written before model.head existed: a case leaving it null keeps their hash
    (resuming and grouping match them); a head set is a different configuration."""
    from pathlib import Path

    from harness.config.case import config_hash

    records = (json.loads(p.read_text()) for p in sorted(Path("results/records").glob("*/hf_*.json")))
    record = next(r for r in records if "head" not in r["config"]["model"])  # one written before the field
    config = {**record["config"], "model": {**record["config"]["model"], "head": None}}
    assert config_hash(config) == record["config_hash"]
    assert config_hash({**config, "model": {**config["model"], "head": "masked_lm"}}) != record["config_hash"]
