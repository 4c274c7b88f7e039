"""The caching allocator's reserve replayed over a traced run (harness/measure/traced.py, replayed_reserve): the
allocation log (harness/measure/allocation_log.py) counts each storage once, from the op that makes it to its last
reference, by hand; the traced run makes the ops a real run makes; the replay's allocated peak is the timeline's
(harness/predict/timeline.py, pinned to torch's MemTracker on CPU); on a GPU, the replay against
torch.cuda.max_memory_reserved."""

from unittest import mock

import pytest
import torch
import transformers.masking_utils as masking_utils
from support import build
from torch.utils._python_dispatch import TorchDispatchMode

from harness.config.compose import make_case
from harness.measure.allocation_log import AllocationLog
from harness.measure.traced import REPLAYED_STEPS, _workload, fake_cpu_run, replayed_reserve, traced_config
from harness.predict import estimate
from harness.predict.caching_allocator import CachingAllocator
from harness.units import MIB

# two layers of a small llama (harness's family): widths whose tensors reach the large pool
LLAMA = [
    "model=llama",
    "model.hidden_size=512",
    "model.intermediate_size=1376",
    "model.num_heads=8",
    "model.num_kv_heads=8",
    "model.num_layers=2",
    "model.vocab_size=4096",
    "workload.batch_size=2",
    "workload.seq_len=256",
]


def test_each_storage_is_one_request_from_its_op_to_its_last_reference():
    allocator = CachingAllocator()
    with AllocationLog(allocator) as log:
        x = torch.empty(1000, dtype=torch.uint8)
        view = x[10:]  # a view: the same storage
        x.add_(1)  # in place: no new storage
        y = x + 1
        assert (log.requests, allocator.allocated_bytes) == (2, 2048)  # each rounded up to 512 bytes
        del x
        assert allocator.allocated_bytes == 2048  # the view keeps the storage alive
        del view
        assert allocator.allocated_bytes == 1024
        z = torch.empty(3 * MIB, dtype=torch.uint8)  # 1 to 10 MiB: a 20 MiB segment of the large pool
        assert allocator.reserved_bytes == 2 * MIB + 20 * MIB
        del y, z
    assert (allocator.allocated_bytes, allocator.peak_allocated_bytes) == (0, 1024 + 3 * MIB)


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2"])
def test_the_traced_step_runs_the_ops_of_a_real_step(preset):
    """Under fake tensors transformers cannot read the position ids and took them for packed sequences, building a
    causal mask each layer saved (an aten.where per layer) that a real run skips. The trace gives it the real run's
    answer (no packed sequences: the workload's rows are one sequence each), and then runs the real step's ops, one
    for one (a fake tensor's metadata queries, prim.device, aside)."""
    overrides = ["device=cpu", "model=hf", f"model.preset={preset}", "workload.batch_size=2", "workload.seq_len=32"]
    positions = torch.arange(32).expand(2, -1)
    assert masking_utils.find_packed_sequence_indices(positions) is None  # what a real run finds
    real, traced = _Ops(), _Ops()
    workload = build(overrides)[2]
    with mock.patch.object(masking_utils, "find_packed_sequence_indices", lambda position_ids: None), real:
        workload.fwd_bwd()
    with fake_cpu_run("cpu"):
        fake = _workload(traced_config(make_case(overrides).config)[0])
        with traced:
            fake.fwd_bwd()
    assert "aten.where.self" not in traced.names
    assert [n for n in traced.names if n != "prim.device.default"] == real.names


@pytest.mark.parametrize(
    "extra",
    [[], ["checkpointing=on"], ["method=lora"], ["workload.zero_grad=zeros"], ["precision=bf16"]],
    ids=lambda extra: " ".join(extra) or "fp32",
)
def test_the_replay_holds_the_timelines_peak(extra):
    """The replay's allocated peak (the log's lifetimes, every step until the reserve stops growing) against the
    timeline's largest moment for CUDA: within 0.1% (the replay also counts what a large-pool block holds beyond
    its request when the remainder is too small to split, as torch.cuda.memory_allocated does)."""
    cfg = make_case([*LLAMA, *extra]).config
    replay = replayed_reserve(cfg, "cuda")
    peak = estimate.step(cfg, "cuda")["peak_step_bytes"]
    assert REPLAYED_STEPS[0] <= replay["steps"] <= REPLAYED_STEPS[1]
    assert replay["allocated_peak_bytes"] == pytest.approx(peak, rel=0.001)
    assert replay["allocated_peak_bytes"] <= replay["reserved_peak_bytes"]
    assert replay["reserved_peak_bytes"] % (2 * MIB) == 0  # every segment is a multiple of 2 MiB


def test_a_stand_in_method_is_not_replayed():
    """8-bit AdamW's trace stands torch's AdamW in (another optimizer state), QLoRA's a 16-bit model (other
    weights): no reserve, and why."""
    for method in ("adamw8bit", "qlora"):
        replay = replayed_reserve(make_case([*LLAMA, f"method={method}"]).config, "cuda")
        assert replay["reserved_peak_bytes"] is None and replay["formula"].startswith("no replay: traced")


def test_multi_rank_and_paged_runs_are_not_replayed_and_a_reserve_still_growing_says_so():
    """The replay runs one process: a DDP or FSDP case has none. A paged optimizer's state is not the
    allocator's (on the CPU device type bitsandbytes makes plain tensors of it, which the log would count). A
    reserve that grew in the last step replayed (here: one step allowed, the first makes the optimizer's state) is
    said to be a lower bound."""
    ddp = replayed_reserve(make_case([*LLAMA, "parallel=ddp"]).config, "cuda")
    assert ddp["reserved_peak_bytes"] is None and "multi-rank" in ddp["formula"]
    paged = replayed_reserve(make_case([*LLAMA, "method.paged=true"]).config, "cuda")
    assert paged["reserved_peak_bytes"] is None and "outside the caching allocator" in paged["formula"]
    with mock.patch("harness.measure.traced.REPLAYED_STEPS", (1, 1)):
        one = replayed_reserve(make_case(LLAMA).config, "cuda")
    assert one["steps"] == 1 and "the reserve still grew in step 1: a lower bound" in one["formula"]
    assert "lower bound" not in replayed_reserve(make_case(LLAMA).config, "cuda")["formula"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("extra", [[], ["checkpointing=on"], ["precision=bf16", "method=lora"]], ids=" ".join)
def test_the_replay_against_the_cuda_run(extra):
    """The same steps on the GPU: torch's own peak allocated and reserved against the replay's. A first figure, not
    a bound anyone measured: 1% and 5%."""
    cfg = make_case([*LLAMA, *extra]).config
    replay = replayed_reserve(cfg, "cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    # what earlier tests left allocated is not this run's
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    workload = build([*LLAMA, "device=cuda", *extra])[2]
    for _ in range(replay["steps"]):
        workload.step()
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - allocated, torch.cuda.max_memory_reserved() - reserved
    assert measured[0] == pytest.approx(replay["allocated_peak_bytes"], rel=0.01)
    assert measured[1] == pytest.approx(replay["reserved_peak_bytes"], rel=0.05)


def test_bench_estimate_replay_adds_the_reserve_where_none_was_measured(tmp_path, capsys):
    """`bench estimate --replay`: the replay of the configuration asked about, and on every card with no GPU record
    (an empty results folder) the device level is the peak + the published context range + its reserve over
    allocated, to the byte; with --no-trace (no torch) it is refused, exit 2."""
    import json

    from harness.cli import main
    from harness.config.groups import BenchConfig
    from harness.report.estimate_calibration import PUBLISHED_CONTEXT_BYTES

    assert main(["estimate", *LLAMA, "--replay", "--format", "json", "--results", str(tmp_path)]) == 0
    answer = json.loads(capsys.readouterr().out)
    replay = answer["replay"]
    assert replay == replayed_reserve(BenchConfig.from_dict(answer["config"]), "cuda")
    reserve = replay["reserved_peak_bytes"] - replay["allocated_peak_bytes"]
    assert reserve > 0
    peak = answer["predicted"]["peak_step_bytes"]
    for card in answer["cards"]:
        assert card["device_low_bytes"] == peak + PUBLISHED_CONTEXT_BYTES[0] + reserve
        assert card["device_high_bytes"] == peak + PUBLISHED_CONTEXT_BYTES[1] + reserve
        assert "replayed at this batch and sequence length" in card["overhead_source"]
    assert main(["estimate", *LLAMA, "--replay", "--no-trace"]) == 2
    assert "--replay" in capsys.readouterr().err
