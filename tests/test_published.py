"""bench estimate's test set: the published GPU measurements of harness/predict/published.json, each predicted from
its overrides (traced where no closed form exists), held to the bounds below. The bounds are what the estimator
reaches, stated, not a target met by tuning: nothing in the prediction is fitted to these rows.

Every figure published is reserved memory (torch.cuda.max_memory_reserved, or NVML's whole process): the tensors
alive at the peak plus the caching allocator's cached and split blocks. The prediction is that reserve, the
allocator's rules replayed over a traced run (harness/predict/caching_allocator.py) for the 11 rows whose run can be
replayed; QLoRA's and 8-bit AdamW's traces stand another method in, and those 3 rows are predicted allocated.

Over all 14 rows: median |error| 7.0% (the allocated figure alone: 8.7%); 11 rows within 12%, three beyond:
- torchtune's QLoRA, -49.4% (4.70 GB predicted, allocated; 9.29 GB published). The source's own table gives
  9.13 GB reserved after the model's init, before any step, where the NF4 model holds about 3.9 GB: torchtune 0.1
  quantizes each weight on the device with torchao 0.1, whose nearest-code search makes numel x 16 temporaries
  (2.9 GB for one MLP weight), and the caching allocator keeps their blocks. The peak reserve is that build;
  bitsandbytes' NF4 (the harness's) makes no such temporaries, and there is no torchao path to replay.
- The HF doc's BERT-large rows at batch 4 without checkpointing, fp16 -13.5% (replayed) and 8-bit Adam -13.9%
  (allocated; fp32 -9.7% replayed). The shortfall is about 384 MiB per sample (-4.7% at batch 1; -0.6% and -3.0%
  with checkpointing): one fp32 batch x 16 x 512 x 512 attention tensor per layer. That is what softmax's
  autograd also saved (its input) in torch <= 1.10 (pytorch/pytorch#64000, fixed for 1.11 by #66018), and the
  doc's runs date from early 2022; its torch release is not published, so nothing is added for it.
torchtune's rows are counted at 2 x 512 tokens: its alpaca_cleaned_dataset truncated at 512 tokens in the releases
that published the figures (they were counted at 2048 before: an upper end no source gave). The Llama 2 LoRA rows
are then all about 1.1 GB under (-6.7% to -7.2%), whatever the adapters. The source's own log after model init,
13.96 GB allocated, is the weights (13.48 GB), the template layer torchtune deep-copies into 32 (0.40 GB, freed after
the build, its blocks kept in the reserve) and its RoPE caches (0.07 GB): a build not replayed here. Llama 3 8B's
row is +0.1%.
The HF doc's rows are read as its Trainer ran them: gradients kept between steps (torch < 2.0's zero_grad, and
gradient accumulation's micro-batches; published.json says why per row); torchtune's accumulate over 64 batches,
so they keep the adapters' gradients too. The seed's inference (+11.8%) is an approximate figure ("~16 GB") with
the CUDA context taken from the HF doc."""

import statistics

import pytest

from harness.predict.published import published
from harness.report.estimate_table import published_table

MEDIAN_BOUND = 0.08  # reached over every row, the reserve replayed (the target is 5%: see above)
ALLOCATED_MEDIAN_BOUND = 0.09  # the allocated figure alone, reached
LARGEST_BOUND = 0.50  # reached: the QLoRA row, its build's reserve (see above)
# a replay's allocated peak (full depth) against the timeline's: the closed-form rows agree to 0.01%, the traced
# ones (extrapolated from 1 and 2 layers) to 0.7%, but BERT fp16's forward peak, 1.6% above the replay's
ALLOCATED_WITHIN = 0.02
# the cheapest replays, run again here to the byte (the others take 8 to 23 s each: held by ALLOCATED_WITHIN)
REPLAYED_AGAIN = ("seed-llama31-8b-lora-inference", "hf-bert-large-b1-accumulate4")
OTHERS_BOUND = 0.12  # the "none above 12%", met but by the three rows named
BEYOND_OTHERS = (
    "torchtune-llama2-7b-qlora",
    "hf-bert-large-b4-fp16",
    "hf-bert-large-b4-adamw8bit",
)


@pytest.fixture(scope="module")
def result():
    from harness.cli_estimate import traced
    from harness.predict.published import evaluate, recorded_replay

    return evaluate(traced, recorded_replay)


def test_every_row_names_its_source_setup_quantity_and_unit():
    data = published()
    for row in data["rows"]:
        assert row["source"] and row["setup"] and row["differs"], row["id"]
        assert row["quantity"] in data["quantities"], row["id"]
        assert row["unit_bytes"] in (10**9, 2**20), row["id"]  # GB as torchtune writes it, MB as NVML's MiB
        assert all(name in data["overheads"] for name in row["adds"]), row["id"]
    # what is added to a prediction is a published figure: the HF doc's 1,343 MB of CUDA kernels, in MiB
    assert data["overheads"]["cuda_kernels_hf"]["bytes"] == 1343 * 2**20


def test_the_sizes_the_rows_explain_their_errors_with_are_the_models_own():
    """The figures the rows' differs give, by hand from the harness's own shapes: torchtune's init log (13.96 GB
    allocated: the weights, the template layer _get_clones copies, the adapters, 33 fp32 RoPE caches of its 4096
    positions), torch <= 1.10's saved softmax input in BERT-large, torchao 0.1's nearest-code temporaries and the
    Llama 3 loss tensor."""
    from harness.config.compose import make_case
    from harness.families.hf_config import hf_config
    from harness.families.llama import shape
    from harness.predict.parameters import lora_parameter_count, parameter_tensors

    rows = {row["id"]: row for row in published()["rows"]}
    said = {rid: " ".join(row["differs"]) for rid, row in rows.items()}
    cfg = make_case(rows["torchtune-llama2-7b-lora-qv-r8"]["overrides"]).config
    tensors = parameter_tensors(cfg)
    llama2 = shape(cfg.model)
    layers, head_dim = llama2["num_layers"], llama2["hidden_size"] // llama2["num_heads"]
    weights, layer = sum(t.numel for t in tensors) * 2, sum(t.numel for t in tensors if t.in_layer) * 2 // layers
    adapters = lora_parameter_count(cfg) * 2
    rope = (layers + 1) * 4096 * (head_dim // 2) * 2 * 4  # (max_seq_len, head_dim / 2, cos and sin), fp32
    assert (round(weights / 1e9, 2), round(layer / 1e9, 2), round(rope / 1e9, 2)) == (13.48, 0.40, 0.07)
    assert round((weights + layer + adapters + adapters // layers + rope) / 1e9, 2) == 13.96  # the source's log
    assert all(f"{x} GB" in said["torchtune-llama2-7b-lora-qv-r8"] for x in ("13.48", "0.40", "0.07", "13.96"))
    bert = hf_config(make_case(rows["hf-bert-large-b4"]["overrides"]).config.model)
    per_sample = bert["num_hidden_layers"] * bert["num_attention_heads"] * 512 * 512 * 4
    assert per_sample == 384 * 2**20 and "384 MiB per sample" in said["hf-bert-large-b4"]
    mlp_weight = 4096 * 11008  # torchao 0.1: (value - nf4) and its abs(), numel x 16 in bf16; min's int64 indices
    assert (round(2 * mlp_weight * 16 * 2 / 1e9, 1), round(mlp_weight * 8 / 1e9, 2)) == (2.9, 0.36)
    assert "2.9 GB" in said["torchtune-llama2-7b-qlora"] and "0.36 GB" in said["torchtune-llama2-7b-qlora"]
    assert round(2 * 512 * 128256 * 4 / 1e9, 2) == 0.53 and "0.53 GB" in said["torchtune-llama3-8b-lora"]


def test_the_errors_stay_within_the_stated_bounds(result):
    expressed = [r for r in result["rows"] if r["error"] is not None]
    assert result["n_expressed"] == len(expressed) == 14
    assert statistics.median(abs(r["error"]) for r in expressed) <= MEDIAN_BOUND
    assert result["allocated_median_abs_error"] <= ALLOCATED_MEDIAN_BOUND
    assert result["n_replayed"] == 11
    assert result["max_abs_error"] <= LARGEST_BOUND
    assert all(abs(r["error"]) <= OTHERS_BOUND for r in expressed if r["id"] not in BEYOND_OTHERS)
    for r in expressed:  # each error is predicted / published - 1, in the row's own unit
        assert r["error"] == pytest.approx(r["predicted_bytes"] / (r["published"] * r["unit_bytes"]) - 1)


def test_the_recorded_traces_are_what_the_code_traces_today(result):
    """The site (no torch) reads published_traced.json: each row it predicts from there is the traced row, to the
    byte; a change to the trace or to a row's setup fails here until `bench estimate --published --save-traces`."""
    from harness.predict.published import evaluate, recorded, recorded_replay

    shown = evaluate(recorded, recorded_replay)
    traced = [r["id"] for r in result["rows"] if r.get("source") == "traced"]
    # no closed form: torchtune's four Llama 2 LoRA rows (two adapt lm_head), Llama 3 8B, the six BERT rows
    assert len(traced) == 11
    stale = [
        (a["id"], a["allocated_bytes"], b["allocated_bytes"])
        for a, b in zip(result["rows"], shown["rows"])
        if a["allocated_bytes"] != b["allocated_bytes"]
    ]
    assert not stale, f"regenerate with bench estimate --published --save-traces: {stale}"


def test_each_recorded_replay_holds_todays_peak(result):
    """A replay's allocated peak is the timeline's (tests/test_replayed_reserve.py, 0.1% on a small llama): each
    recorded one within ALLOCATED_WITHIN of today's allocated figure, and the two cheapest replayed again, to the
    byte."""
    from harness.config.compose import make_case
    from harness.measure.traced import replayed_reserve
    from harness.predict.published import PREDICTED_BY, published

    adds = published()["overheads"]
    replayed = [r for r in result["rows"] if r["reserved_bytes"] is not None]
    for r in replayed:
        allocated = r["allocated_bytes"] - sum(adds[name]["bytes"] for name in r["adds"])
        assert r["replay"]["allocated_peak_bytes"] == pytest.approx(allocated, rel=ALLOCATED_WITHIN), r["id"]
        assert r["replay"]["allocated_peak_bytes"] <= r["reserved_bytes"]
    for r in (r for r in replayed if r["id"] in REPLAYED_AGAIN):
        again = replayed_reserve(make_case(r["overrides"]).config, "cuda", PREDICTED_BY[r["quantity"]][1])
        assert again == r["replay"], f"regenerate with bench estimate --published --save-traces: {r['id']}"


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
        (["--published", "--replay"], "no overrides, --card or --replay"),
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
        allocated = f'<td class="num" data-label="Allocated alone">{esc(text["allocated_error"])}</td>'
        assert f"{cells}{esc(text['error'])}</td>{allocated}" in html, row["id"]
