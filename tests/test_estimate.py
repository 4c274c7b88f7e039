"""`bench estimate`: in seconds, without torch or weights; every answer beside how far such predictions were from
measurement, the device figure labelled with where it comes from; `bench fit` starting from the estimate."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.compose import make_case
from harness.predict import estimate
from harness.records import folder as results_folder
from harness.records.record import Record
from harness.report.estimate_calibration import PUBLISHED_CONTEXT_BYTES, calibration, device_overheads, error_band
from harness.report.estimate_table import table
from harness.run import fit as fit_mod
from harness.units import GIB

QWEN_QLORA = ["model=hf", "model.preset=qwen2.5-7b", "method=qlora", "workload.batch_size=1", "workload.seq_len=2048"]


def test_the_qwen_qlora_question_is_answered_in_under_5_seconds_without_torch(tmp_path):
    code = (
        "import sys, json\nfrom harness.cli import main\n"
        f"rc = main(['estimate', *{QWEN_QLORA!r}, '--format', 'json', '--results', {str(tmp_path)!r}])\n"
        "print(json.dumps({'rc': rc, 'loaded': sorted({'torch', 'transformers', 'pandas'} & set(sys.modules))}))"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    elapsed = time.monotonic() - started
    *answer_lines, last = out.stdout.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "loaded": []}
    assert elapsed < 5, f"{elapsed:.1f} s"
    answer = json.loads("\n".join(answer_lines))
    predicted = answer["predicted"]
    assert predicted["params"]["total"] == 7_615_616_512
    # the peak is the step's largest moment (harness/predict/timeline.py): here the loss's backward, which holds,
    # beyond the end of forward's live set, the two fp32 t x V tensors of the cross entropy's backward
    # (grad of the logits in and out; Qwen2.5's vocabulary is 152,064), less the shifted int64 labels nll_loss's
    # backward has released
    moments = predicted["moments"]
    assert predicted["peak_step_bytes"] == max(v for v in moments.values() if v is not None)
    assert predicted["peak_step_bytes"] == moments[predicted["peak_moment"]]
    assert predicted["peak_moment"] == "loss backward"
    assert moments["loss backward"] - moments["end of forward"] == 2 * 2048 * 152_064 * 4 - 2048 * 8
    assert [row["card_gib"] for row in answer["cards"]] == list(estimate.CARDS_GB)
    assert answer["calibration"]["note"].startswith("not yet measured")  # an empty results folder
    assert all(row["overhead_source"].startswith("published range") for row in answer["cards"])
    # what it assumed: the user set batch and sequence; QLoRA in bf16 cannot be expressed yet, so fp32 is said
    assert (
        answer["assumed"][0].startswith("fp32 outside the 4-bit weights") and "checkpointing off" in answer["assumed"]
    )
    assert answer["band"]["source"].startswith("no error band: not yet measured")


@pytest.mark.parametrize("band", [estimate.NO_BAND, {"low": 0.93, "high": 1.17, "source": "measured"}])
def test_cards_answer_consistently(band):
    config = make_case(QWEN_QLORA).config
    predicted = estimate.step(config)
    overheads = {gb: (*PUBLISHED_CONTEXT_BYTES, "published") for gb in estimate.CARDS_GB}
    rows = estimate.cards(config, predicted, overheads, estimate.CARDS_GB, band)
    assert [row["largest_batch_size"] for row in rows] == sorted(row["largest_batch_size"] for row in rows)
    need = estimate.peak_function(config)
    peak = predicted["peak_step_bytes"]
    for row in rows:
        card = row["card_gib"] * GIB
        low, high = row["device_low_bytes"], row["device_high_bytes"]
        assert (low, high) == (
            int(peak * band["low"]) + PUBLISHED_CONTEXT_BYTES[0],
            int(peak * band["high"]) + PUBLISHED_CONTEXT_BYTES[1],
        )
        assert row["fits"] == ("fits" if high <= card else "no" if low > card else "borderline")
        # the largest batch it names fits at the band's high end, with the context's, and one more does not
        b = row["largest_batch_size"]
        room = (card - PUBLISHED_CONTEXT_BYTES[1]) / band["high"]
        if b:
            assert need(estimate.with_value(config, "workload.batch_size", b)) <= room
        assert need(estimate.with_value(config, "workload.batch_size", b + 1)) > room
    assert {row["fits"] for row in rows} == {"no", "borderline", "fits"} or band is estimate.NO_BAND


def test_the_llama_lora_question_answers_for_the_published_dtype_and_says_what_it_assumed(tmp_path, capsys):
    """The question as people ask it: the model's own dtype (bf16), 2048 tokens, both named at the top."""
    from harness.cli import main

    ask = ["model=hf", "model.preset=llama-3.1-8b", "method=lora", "workload.batch_size=1"]
    assert main(["estimate", *ask, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("bench estimate: hf:llama-3.1-8b, lora r=16, bf16, checkpointing off, batch 1 x 2048")
    assumed = "assumed: bf16 (the model's dtype), seq 2048, checkpointing off, gradients freed after each step"
    assert out[1] == assumed + " (workload.zero_grad=zeros keeps them), LoRA r=16 on every linear of the decoder layers"
    assert any("gradients are held whole" in line for line in out)
    # bf16 weights and adapters: 2 bytes per parameter (8,030,261,248 and 32 layers x 16 x 81,920 of them)
    parameters = next(line for line in out if line.startswith("  parameters"))
    assert float(parameters.split()[1]) == pytest.approx((8_030_261_248 + 32 * 16 * 81_920) * 2 / GIB, abs=0.006)
    # what the user sets is never assumed: fp32 and 64 tokens asked, fp32 and 64 tokens answered
    assert main(["estimate", *ask, "precision=fp32", "workload.seq_len=64", "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ", fp32, " in lines[0] and "x 64 tokens" in lines[0] and not lines[1].startswith("assumed: fp32")


def test_the_verdict_takes_the_measured_error_band_and_names_its_source():
    stored, _ = results_folder.read_folder(results_folder.resolve())  # the committed CPU records
    cfg = make_case(["model=hf", "model.preset=tiny-llama", "method=lora"]).config
    band = error_band(calibration(stored, cfg))
    assert 0.9 <= band["low"] <= band["high"] <= 1.1  # the timeline against the CPU records' measured peaks
    assert "CPU record(s)" in band["source"] and "no GPU record: the band comes from CPU measurements" in band["source"]
    gpu = dict(
        calibration(stored, cfg),
        rows=[
            {
                "hardware": "NVIDIA H100",
                "device": "gpu",
                "n": 2,
                "measured_over_predicted": {"peak_step_bytes": [1.02, 1.13]},
            }
        ],
    )
    assert error_band(gpu) == {
        "low": 1.02,
        "high": 1.13,
        "source": ("measured / predicted step peak of 2 GPU record(s) of llama lora, checkpointing off (NVIDIA H100)"),
    }
    peak, budget = 10 * GIB, 12 * GIB
    context = (int(0.3 * GIB), int(1.5 * GIB))
    assert estimate.verdict(peak, {"low": 1.0, "high": 1.05}, context, budget) == "fits"  # 10.5 + 1.5 <= 12
    assert estimate.verdict(peak, {"low": 1.0, "high": 1.06}, context, budget) == "borderline"
    assert estimate.verdict(peak, {"low": 1.18, "high": 1.2}, context, budget) == "no"  # 11.8 + 0.3 > 12


def test_a_configuration_without_a_figure_says_why_in_every_row():
    cfg = make_case(["model=hf", "model.preset=tiny-qwen2", "precision=amp_bf16"]).config
    predicted = estimate.step(cfg)
    overheads = {gb: (*PUBLISHED_CONTEXT_BYTES, "published") for gb in (8, 24)}
    rows = estimate.cards(cfg, predicted, overheads, (8, 24))
    assert all(r["fits"] == "unknown" and r["largest_batch_size"] is None for r in rows)
    assert {r["no_figure_reason"] for r in rows} == {"no activation figure: not derived: hf under autocast"}
    text = table(
        {
            "config": cfg,
            "assumed": [],
            "predicted": predicted,
            "band": estimate.NO_BAND,
            "calibration": calibration([], cfg),
            "cards": rows,
        }
    )
    assert "no figure: no activation figure: not derived: hf under autocast" in text
    card_rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["8"], ["24"])]
    assert len(card_rows) == 2 and all("-" not in cells for cells in card_rows)  # a reason, not a bare "-"


def _gpu_record(gib: float, context: int, reserved: int, allocated: int) -> Record:
    record = {
        "status": "ok",
        "provenance": {"device_type": "cuda", "gpu_name": "NVIDIA H100", "gpu_memory_bytes": int(gib * GIB)},
        "metrics": {
            "memory": {
                "cuda_context": {"context_bytes": context},
                "torch_max_reserved_bytes": reserved,
                "torch_max_allocated_bytes": allocated,
            }
        },
    }
    return Record(record, Path("x.json"))


def test_the_device_figure_comes_from_gpu_records_of_that_card_else_the_published_range():
    stored = [_gpu_record(79.6, 500 * 2**20, 10 * GIB, 9 * GIB), _gpu_record(79.6, 600 * 2**20, 10 * GIB, 9 * GIB)]
    overheads = device_overheads(stored, estimate.CARDS_GB)
    low, high, source = overheads[80]
    assert (low, high) == (500 * 2**20 + GIB, 600 * 2**20 + GIB)
    assert source == "measured: CUDA context + allocator reserve in 2 record(s) on NVIDIA H100"
    assert overheads[24] == (*PUBLISHED_CONTEXT_BYTES, overheads[24][2]) and "published range" in overheads[24][2]


def test_calibration_says_how_far_such_predictions_were_from_the_folders_measurements():
    stored, _ = results_folder.read_folder(results_folder.resolve())  # Records, read and migrated once
    llama = make_case(["model=hf", "model.preset=tiny-llama", "method=full_adamw"]).config  # counted as model=llama
    found = calibration(stored, llama)
    assert found["rows"] and found["note"] is None
    for row in found["rows"]:
        assert row["n"] > 0 and row["hardware"].startswith("cpu-")
        lo, hi = row["measured_over_predicted"]["activations_bytes"]
        assert 0.5 < lo <= hi < 2
    # records of the architectures-cpu suite: each family's activations, as tests/test_hf_activations.py checks them
    for preset in ("tiny-qwen3", "tiny-gemma2", "tiny-gpt2"):
        rows = calibration(stored, make_case(["model=hf", f"model.preset={preset}", "method=lora"]).config)["rows"]
        assert all(0.95 <= r <= 1.05 for row in rows for r in row["measured_over_predicted"]["activations_bytes"])
    unseen = calibration([], make_case(["model=hf", "model.preset=tiny-gpt2", "method=sgd"]).config)
    assert (
        unseen["rows"] == []
        and unseen["note"] == "not yet measured: no record of gpt2 sgd, checkpointing off in the folder"
    )


class FakeProbes:
    """bench fit's probes without processes: `fits_up_to` decides each probe's status."""

    def __init__(self, monkeypatch, fits_up_to: int):
        self.values: list[int] = []
        self.fits_up_to = fits_up_to
        monkeypatch.setattr("harness.run.process.run_in_subprocess", self.run)
        monkeypatch.setattr("harness.records.io.write_record", lambda record, out: out / f"{len(self.values)}.json")
        monkeypatch.setattr("harness.config.compose.make_case", lambda overrides: overrides)

    def run(self, overrides, log):
        value = int(overrides[-1].split("=")[1])
        self.values.append(value)
        status = "ok" if value <= self.fits_up_to else "oom"
        return {"status": status, "provenance": {"device_type": "cpu"}, "error": None}


@pytest.mark.parametrize("truth", [9, 50, 90, 100, 101, 333])
def test_fit_brackets_an_answer_within_10_percent_of_the_prediction_by_the_third_probe(truth, tmp_path, monkeypatch):
    for predicted in range(math.ceil(truth * 0.9), math.floor(truth * 1.1) + 1):
        probes = FakeProbes(monkeypatch, truth)
        result = fit_mod.search([], "workload.batch_size", 1 << 16, tmp_path, predicted)
        assert (result.max_fitting, result.first_not_fitting) == (truth, truth + 1)
        window = math.ceil(predicted / 9)  # the step after the neighbour: 10% either side
        assert len(probes.values) <= (2 if predicted == truth else 3 + math.ceil(math.log2(window))), probes.values


def test_fit_from_an_exact_or_one_off_prediction_takes_at_most_3_probes(tmp_path, monkeypatch):
    """Below 10, within 10% of the answer is exact, and one off is the model's error there."""
    for truth in range(1, 12):
        for predicted in (truth - 1, truth, truth + 1):
            if not 1 <= predicted <= 9:
                continue
            probes = FakeProbes(monkeypatch, truth)
            result = fit_mod.search([], "workload.batch_size", 1 << 16, tmp_path, predicted)
            assert result.max_fitting == truth, (truth, predicted, probes.values)
            assert len(probes.values) <= (2 if predicted >= truth else 3), (truth, predicted, probes.values)


@pytest.mark.slow
def test_bench_fit_with_a_good_prediction_takes_at_most_3_probes(tmp_path, capsys):
    """README's worked example under a CPU budget: the analytic prediction (9) is one above the measured answer."""
    from harness.cli import main

    mlp = ["device=cpu", "model=mlp", "model.depth=4", "model.width=256", "workload.seq_len=64"]
    probe = ["measure.repeats=3", "measure.warmup=0", "measure.flops=false", "device.memory_budget_gib=0.0075"]
    assert main(["fit", *mlp, *probe, "fit.search=workload.batch_size", f"output_dir={tmp_path}"]) == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["max_fitting"] == 8 and fit["first_not_fitting"] == 9 and fit["predicted"]["value"] == 9
    assert len(fit["probes"]) <= 3
