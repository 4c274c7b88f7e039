"""workload.zero_grad: gradients freed after each step (set_to_none, torch >= 2.0) or kept zero-filled (zeros: torch
< 2.0's default, transformers' Trainer before v4.27, and the live set of gradient accumulation's micro-batches).
The measured loop keeps them (bytes by hand), a case without the field hashes as before it, a record cannot set it
to anything else, and the prediction adds the gradients to the moments before the optimizer step (each moment
against the tracker: tests/test_peak_moments.py)."""

import json

import pytest
from support import build

from harness import repo_root
from harness.config.case import config_hash
from harness.predict import analytic, timeline

MLP = ["model=mlp", "model.depth=3", "model.width=16", "workload.batch_size=2", "workload.seq_len=4"]
PARAMS = 3 * (16 * 16 + 16)  # three Linear(16, 16) layers


@pytest.mark.parametrize("mode, live", [("set_to_none", 0), ("zeros", PARAMS * 4)])
def test_after_a_step_the_gradients_are_freed_or_kept_zero_filled(mode, live):
    _, trainable, workload = build([*MLP, f"workload.zero_grad={mode}"])
    workload.step()
    workload.step()
    grads = [p.grad for p in trainable.model.parameters()]
    assert sum(g.numel() * g.element_size() for g in grads if g is not None) == live
    assert all(g is None or not g.any() for g in grads)
    workload.fwd_bwd()  # backward accumulates into the kept tensors in place; reset_grads zeroes them again
    workload.reset_grads()
    assert (
        sum(g.numel() * g.element_size() for g in (p.grad for p in trainable.model.parameters()) if g is not None)
        == live
    )


def test_kept_gradients_add_every_gradient_to_the_forward_and_none_to_the_optimizer_step():
    freed, kept = (build([*MLP, f"workload.zero_grad={m}"])[0] for m in ("set_to_none", "zeros"))
    moments = {}
    for name, cfg in (("freed", freed), ("kept", kept)):
        fixed = timeline.fixed_parts(cfg, analytic.predict(cfg, "cpu")["memory_allocated"], "cpu")
        moments[name] = timeline.step_moments(cfg, fixed, analytic.activations(cfg, None, "cpu"))["moments"]
    for moment in ("end of forward", "loss backward"):
        assert moments["kept"][moment] - moments["freed"][moment] == PARAMS * 4
    assert moments["kept"]["optimizer step"] == moments["freed"]["optimizer step"]


def test_a_case_without_the_field_hashes_as_before_it_and_a_record_cannot_forge_it():
    from hostile import forge, set_path

    from harness.records.validate import RecordInvalid, check

    path = next(p for p in sorted((repo_root() / "results" / "records").glob("*/*.json")) if "mlp" in p.name)
    record = json.loads(path.read_text())
    assert "zero_grad" not in record["config"]["workload"]  # written before the field
    config = {**record["config"], "workload": {**record["config"]["workload"], "zero_grad": "set_to_none"}}
    assert config_hash(config) == record["config_hash"]
    assert config_hash({**config, "workload": {**config["workload"], "zero_grad": "zeros"}}) != record["config_hash"]
    with pytest.raises(RecordInvalid) as err:
        check(forge(set_path(record, ("config", "workload", "zero_grad"), "<i>sometimes</i>")))
    assert err.value.field == "config.workload.zero_grad"


def test_tables_name_a_configuration_with_kept_gradients_apart():
    from harness.report.frame import config_label

    freed, kept = (build([*MLP, f"workload.zero_grad={m}"])[0] for m in ("set_to_none", "zeros"))
    assert config_label(kept) == config_label(freed).replace("bs2x4", "bs2x4 grads kept")
    assert "grads kept" not in config_label(freed)
