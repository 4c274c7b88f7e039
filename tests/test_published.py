"""bench estimate's test set: the published GPU measurements of harness/predict/published.json, each predicted from
its overrides (traced where no closed form exists), held to the bounds below. The bounds are what the estimator
reaches, stated, not a target met by tuning: nothing in the prediction is fitted to these rows.

Over all 14 rows: median |error| 5.6%, above the issue's 5%; 10 rows within 12%, four beyond:
- torchtune's QLoRA, -27.9% (6.70 GB predicted, 9.29 GB published): bf16 QLoRA as bitsandbytes and peft run it
  (NF4 weights 3.34 GB, bf16 embeddings and lm_head 0.52 GB, adapters with their state 0.16 GB, activations under
  checkpointing 1.86 GB, peak at the loss's backward). The LoRA row on the same targets and rank is +2.8%, so the
  missing ~2.6 GB is QLoRA's, and likely in what the prediction does not hold: the row's quantity is the caching
  allocator's reserve, which keeps the freed blocks of the bf16 weight copies each 4-bit matmul makes (34 to 90 MB,
  seven a layer, in the forward, the recomputation and the backward) and what they fragment; and torchtune
  quantizes with torchao's NF4Tensor, whose kernels are not bitsandbytes'. No GPU record here measures either.
- Llama 3 8B's, +27%: its token count is not published, and at the 2 x 2048 tokens the setup allows the loss's
  three t x V fp32 tensors alone are 6.3 GB (V = 128,256), more than the whole gap.
- The HF doc's BERT-large rows at batch 4 without checkpointing, fp16 -13.7% and 8-bit Adam -13.9% (fp32 -11.9%):
  the trace makes CUDA's choices (harness/measure/cuda_ops.py: one-byte dropout masks, fp32 softmax and LayerNorm
  under autocast), so the tensors are CUDA's; the gap grows with the activations (-6.3% at batch 1, -2.6% and -3.0%
  with checkpointing), as the caching allocator's cached blocks in NVML's whole-process figure would, which no
  source here gives. Before the CUDA choices the CPU's 4-byte masks filled most of that gap (-2.2% at fp32, batch 4),
  and the median read 3.0%: a coincidence, not a prediction.
The HF doc's rows are read as its Trainer ran them: gradients kept between steps (torch < 2.0's zero_grad, and
gradient accumulation's micro-batches; published.json says why per row). The seed's inference (+10.6%) is an
approximate figure ("~16 GB") with the CUDA context taken from the HF doc."""

import statistics

import pytest

from harness.predict.published import published
from harness.report.estimate_table import published_table

MEDIAN_BOUND = 0.06  # reached over every row (the target is 5%: see above)
LARGEST_BOUND = 0.30  # reached: the QLoRA and Llama 3 8B rows (see above)
OTHERS_BOUND = 0.12  # the "none above 12%", met but by the four rows named
BEYOND_OTHERS = (
    "torchtune-llama2-7b-qlora",
    "torchtune-llama3-8b-lora",
    "hf-bert-large-b4-fp16",
    "hf-bert-large-b4-adamw8bit",
)


@pytest.fixture(scope="module")
def result():
    from harness.cli_estimate import traced
    from harness.predict.published import evaluate

    return evaluate(traced)


def test_every_row_names_its_source_setup_quantity_and_unit():
    data = published()
    for row in data["rows"]:
        assert row["source"] and row["setup"] and row["differs"], row["id"]
        assert row["quantity"] in data["quantities"], row["id"]
        assert row["unit_bytes"] in (10**9, 2**20), row["id"]  # GB as torchtune writes it, MB as NVML's MiB
        assert all(name in data["overheads"] for name in row["adds"]), row["id"]
    # what is added to a prediction is a published figure: the HF doc's 1,343 MB of CUDA kernels, in MiB
    assert data["overheads"]["cuda_kernels_hf"]["bytes"] == 1343 * 2**20


def test_the_errors_stay_within_the_stated_bounds(result):
    expressed = [r for r in result["rows"] if r["error"] is not None]
    assert result["n_expressed"] == len(expressed) == 14
    assert statistics.median(abs(r["error"]) for r in expressed) <= MEDIAN_BOUND
    assert result["max_abs_error"] <= LARGEST_BOUND
    assert all(abs(r["error"]) <= OTHERS_BOUND for r in expressed if r["id"] not in BEYOND_OTHERS)
    for r in expressed:  # each error is predicted / published - 1, in the row's own unit
        assert r["error"] == pytest.approx(r["predicted_bytes"] / (r["published"] * r["unit_bytes"]) - 1)


def test_the_recorded_traces_are_what_the_code_traces_today(result):
    """The site (no torch) reads published_traced.json: each row it predicts from there is the traced row, to the
    byte; a change to the trace or to a row's setup fails here until `bench estimate --published --save-traces`."""
    from harness.predict.published import evaluate, recorded

    shown = evaluate(recorded)
    traced = [r["id"] for r in result["rows"] if r.get("source") == "traced"]
    assert len(traced) == 9  # the rows with no closed form: two torchtune LoRA q,v rows, Llama 3 8B, six BERT rows
    stale = [
        (a["id"], a["predicted_bytes"], b["predicted_bytes"])
        for a, b in zip(result["rows"], shown["rows"])
        if a["predicted_bytes"] != b["predicted_bytes"]
    ]
    assert not stale, f"regenerate with bench estimate --published --save-traces: {stale}"


def test_every_row_is_expressed_and_a_refused_one_would_say_why(result):
    """Every published row is expressed today (bf16 QLoRA, BERT through model=hf); a row whose overrides the
    harness refuses keeps its place in the table with the refusal and what would express it."""
    from harness.predict.published import row_prediction

    assert all(r["predicted_bytes"] is not None for r in result["rows"]), [r["reason"] for r in result["rows"]]
    refused = {
        "id": "fp16-qlora",
        "published": 1.0,
        "unit_bytes": 10**9,
        "quantity": "peak_reserved",
        "overrides": ["model=llama", "model.preset=tiny", "method=qlora", "precision=amp_fp16"],
        "needs": "fp16 QLoRA",
    }
    row = row_prediction(refused, None)
    assert row["predicted_bytes"] is None and row["error"] is None
    assert row["reason"].startswith("cannot be expressed yet: precision: ") and row["reason"].endswith(
        "; needs fp16 QLoRA"
    )
    table = published_table(result)
    assert all(f"{r['id']}  " in table for r in result["rows"])  # no id runs into its quantity
    assert f"median |error| {result['median_abs_error']:.1%}" in table


@pytest.mark.parametrize(
    "args, said",
    [
        (["--save-traces"], "give it with --published"),
        (["--published", "--no-trace", "--save-traces"], "cannot be given with --no-trace"),
    ],
)
def test_save_traces_is_refused_where_it_records_nothing(args, said, capsys):
    from harness.cli import main
    from harness.predict.published import TRACED_FILE

    before = TRACED_FILE.read_bytes()
    assert main(["estimate", *args]) == 2
    assert said in capsys.readouterr().err and TRACED_FILE.read_bytes() == before


def test_the_sites_page_shows_every_row_as_traced_today(result):
    """published.html (built without torch) holds each row's predicted figure and error as `bench estimate
    --published` computes them, traced rows included, and the same median."""
    from harness.report.estimate_table import published_rows, published_summary
    from harness.report.site.markup import esc
    from harness.report.site.published_page import TRACED_ONLY, published_page

    html = published_page()
    assert TRACED_ONLY not in html and esc(published_summary(result)) in html
    for row, text in zip(result["rows"], published_rows(result)):
        cells = f'data-label="Predicted">{esc(text["predicted"])}</td><td class="num" data-label="Error">'
        assert f"{cells}{esc(text['error'])}</td>" in html, row["id"]
