"""What a GPU run must get right, pinned where it can be without one: the allocator's rounding (arithmetic),
the inference peak of the model alone, budgets that count inputs, failures that are results (a FLOP pass out
of memory, cuBLAS allocation failures, hung and killed cases), NVML attribution, the attention kernel that ran.
The CUDA side of each is in tests/test_gpu.py."""

import signal

import pytest
import torch
from support import build, measure_memory_as_case, record_in_process

from harness.measure import faults
from harness.measure.attention import kernels_used
from harness.measure.checks import adamw_expected_bytes, trainable_bytes
from harness.measure.cuda_context import context_from
from harness.measure.memory import unique_tensor_bytes
from harness.measure.nvml import attribute_processes
from harness.measure.trackers import RssPeak
from harness.predict import analytic
from harness.predict.allocator import allocated_bytes, allocated_total
from harness.records.io import read_record
from harness.run import exits
from harness.run.sweep import run_sweep
from harness.units import GIB

TINY_MLP = [
    "device=cpu",
    "model=mlp",
    "model.depth=4",
    "model.width=64",
    "workload.batch_size=2",
    "workload.seq_len=8",
    "measure.repeats=3",
    "measure.warmup=0",
    "measure.flops=false",
]


def test_cuda_allocator_rounds_every_storage_up_to_512_byte_blocks(monkeypatch):
    assert [allocated_bytes(n, "cuda") for n in (0, 1, 4, 512, 513, 4096, 1000)] == [0, 512, 512, 512, 1024, 4096, 1024]
    assert [allocated_bytes(n, "cpu") for n in (0, 1, 4, 513)] == [0, 1, 4, 513]
    # per storage, never of the sum: two 4-byte step tensors take two blocks
    assert allocated_total([4, 4], "cuda") == 1024
    monkeypatch.setenv("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")  # no caching allocator, no blocks
    assert allocated_bytes(4, "cuda") == 4


def test_analytic_model_predicts_logical_and_allocated_bytes_by_hand():
    config = build(["model=mlp", "model.depth=2", "model.width=32", "measure.flops=false"])[0]
    # per layer: a 32x32 fp32 weight (4096 B, a whole number of blocks) and a 32-element bias (128 B -> 512)
    cuda = analytic.memory(config, "cuda")
    assert (cuda["params_bytes"], cuda["allocated"]["params_bytes"]) == (2 * (4096 + 128), 2 * (4096 + 512))
    assert cuda["allocated"]["grads_bytes"] == 2 * (4096 + 512)
    # fused AdamW on CUDA: two moments per tensor and a float32 step per tensor on the device (512 B each)
    assert cuda["optimizer_bytes"] == 2 * 2 * (4096 + 128) + 4 * 4
    assert cuda["allocated"]["optimizer_bytes"] == 2 * 2 * (4096 + 512) + 4 * 512
    # foreach AdamW keeps the steps on the host: 4 bytes each, unrounded
    config.method.fused = False
    assert analytic.memory(config, "cuda")["allocated"]["optimizer_bytes"] == 2 * 2 * (4096 + 512) + 4 * 4
    cpu = analytic.memory(config, "cpu")
    assert cpu["allocated"] == {k: cpu[k] for k in ("params_bytes", "grads_bytes", "optimizer_bytes")}


def test_direct_side_of_the_checks_counts_as_the_tracker_does_on_cpu():
    cfg, trainable, workload = build(["model=mlp", "model.depth=3", "model.width=16"])
    workload.warm_up(2, 0)
    params = list(trainable.model.parameters())
    logical = sum(p.numel() * p.element_size() for p in params)
    assert trainable_bytes(trainable.model) == logical == 3 * (16 * 16 + 16) * 4
    # foreach AdamW on a CPU: two moments and a 4-byte step per tensor, as optimizer_state_bytes walks them
    assert adamw_expected_bytes(trainable.optimizer) == 2 * logical + 4 * len(params)
    states = [v for s in trainable.optimizer.state.values() for v in s.values()]
    assert unique_tensor_bytes(states) == adamw_expected_bytes(trainable.optimizer)


@pytest.mark.parametrize("method", ["full_adamw", "sgd", "adamw8bit"])
def test_inference_peak_is_the_model_alone_by_hand_count(method):
    """mlp depth 4, width 64, 16 tokens, fp32: params 4 x (64² + 64) x 4 B; the inference forward's own tensors
    peak at three (t x w) fp32 tensors: the block's input, the Linear's output and the ReLU's output."""
    _, _, workload = build(
        [
            "model=mlp",
            "model.depth=4",
            "model.width=64",
            "workload.batch_size=2",
            "workload.seq_len=8",
            f"method={method}",
        ]
    )
    memory = measure_memory_as_case(workload)
    params = 4 * (64 * 64 + 64) * 4
    assert memory["params_bytes"] == params
    assert memory["peak_infer_bytes"] == params + 3 * (16 * 64 * 4)  # the same for every optimizer
    assert memory["optimizer_bytes"] > 0 or method == "sgd"
    assert memory["peak_step_bytes"] > memory["peak_infer_bytes"] + memory["optimizer_bytes"]


def test_inference_pass_refuses_to_run_once_optimizer_state_exists():
    from harness.measure.memory import measure_inference_memory

    _, _, workload = build(TINY_MLP[1:])
    workload.step()
    with pytest.raises(RuntimeError, match="before the first optimizer step"):
        measure_inference_memory(workload)


def test_migrated_records_carry_the_inference_peak_without_optimizer_state():
    """Committed 1.1 records measured fwd_infer with the AdamW state alive: reading them gives the recorded
    figure less optimizer_bytes, which for an mlp is again params + 3 tensors of t x w (hand count)."""
    from pathlib import Path

    from harness.records.validate import load_bytes

    checked = 0
    for path in sorted(Path("results/records").glob("*/mlp_full-adamw_ckpt-off_*.json")):
        raw = read_record(path)
        if raw["schema_version"] != "1.1" or raw["status"] != "ok":
            continue
        model, workload = raw["config"]["model"], raw["config"]["workload"]
        if model["depth"] < 2 or model["norm"] or model["residual"] or raw["config"]["precision"]["name"] != "fp32":
            continue
        old = raw["metrics"]["memory"]
        record = load_bytes(path.read_bytes())
        memory = record["metrics"]["memory"]
        assert memory["peak_infer_with_optimizer_state_bytes"] == old["peak_infer_bytes"]
        assert memory["peak_infer_bytes"] == old["peak_infer_bytes"] - old["optimizer_bytes"]
        tokens = workload["batch_size"] * workload["seq_len"]
        assert memory["peak_infer_bytes"] == old["params_bytes"] + 3 * tokens * model["width"] * 4
        assert memory["train_to_infer_memory_ratio"] == old["peak_step_bytes"] / memory["peak_infer_bytes"]
        assert "derived when read" in memory["peak_infer_holds"]
        checked += 1
    assert checked >= 1


def test_out_of_memory_is_recognised_in_library_allocation_failures():
    assert faults.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert faults.is_out_of_memory(
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
    )
    assert faults.is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not faults.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    assert not faults.is_out_of_memory(ValueError("CUDA out of memory"))  # only errors torch raises count


def test_a_killed_case_says_which_signal_and_what_it_usually_means():
    assert exits.describe_exit(-signal.SIGKILL) == (
        "was killed by signal SIGKILL (9): " + exits.SIGNAL_MEANINGS[signal.SIGKILL]
    )
    assert "out-of-memory killer" in exits.describe_exit(-9)
    assert "(/dev/shm)" in exits.describe_exit(-signal.SIGBUS)
    assert exits.describe_exit(1) == "exited with code 1"
    assert exits.describe_exit(-200) == "was killed by signal 200"  # no such signal: the number alone


def test_nvml_attributes_processes_only_when_it_can_find_this_one():
    gib = 1 << 30
    assert attribute_processes({100: 5 * gib, 200: gib}, 100) == (5 * gib, [{"pid": 200, "bytes": gib}], None)
    mine, others, why = attribute_processes({4711: 5 * gib, 200: gib}, 100)  # a container: host PIDs
    assert mine is None and others is None and "2 process(es) listed, none with this PID" in why
    assert attribute_processes({}, 100)[2].startswith("NVML's process list cannot be matched")
    assert attribute_processes({100: None}, 100) == (None, [], "the driver reports no usage for this process")


def test_cuda_context_from_the_best_source_available():
    gib = 1 << 30
    assert context_from(10 * gib, process_bytes=10 * gib + (600 << 20))["context_bytes"] == 600 << 20
    both = context_from(10 * gib, device_used_bytes=13 * gib, others_bytes=2 * gib)
    assert both["context_bytes"] == gib and "other processes'" in both["method"]
    alone = context_from(10 * gib, device_used_bytes=11 * gib)
    assert alone["context_bytes"] == gib and "includes other processes' memory" in alone["method"]
    assert context_from(0)["context_bytes"] is None


def test_fwd_infer_builds_no_kv_cache():
    _, _, workload = build(["model=llama", "model.preset=tiny"])
    workload.model.eval()
    with torch.inference_mode():
        out = workload.model(**workload.inputs)
        cached = workload.model(**{**workload.inputs, "use_cache": True})
    assert getattr(out, "past_key_values", None) is None
    assert getattr(cached, "past_key_values", None) is not None  # what use_cache=False leaves out


def test_attention_kernel_that_ran_is_read_from_sdpa_itself():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, _, workload = build(["model=llama", "model.preset=tiny"])
    assert kernels_used(workload) == {"fwd_train": "flash", "fwd_infer": "flash"}  # torch's CPU flash kernel
    with sdpa_kernel(SDPBackend.MATH):
        assert kernels_used(workload) == {"fwd_train": "math", "fwd_infer": "math"}
    _, _, eager = build(["model=llama", "model.preset=tiny", "model.attn_implementation=eager"])
    assert kernels_used(eager) == {"fwd_train": "eager", "fwd_infer": "eager"}
    assert kernels_used(build(TINY_MLP[1:])[2]) is None


@pytest.mark.parametrize("overrides", [["precision=fp32"], ["precision=bf16"], ["method=lora"]])
def test_math_kernel_activations_match_the_analytic_formula(overrides):
    """SDPA's math fallback saves q, k and v repeated to every head in fp32 and the s x s softmax: derived in
    harness/predict/analytic.py, exact against the tracker when the math kernel is forced."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        cfg, _, workload = build(["model=llama", "model.preset=tiny", "workload.seq_len=128", *overrides])
        measured = measure_memory_as_case(workload)["activations_bytes"]
    assert measured == analytic.activation_bytes(cfg, "math")
    assert measured > analytic.activation_bytes(cfg)  # the fused kernels' formula would be wrong here


def test_record_names_the_attention_kernel_and_predicts_with_it():
    record = record_in_process(
        [
            "device=cpu",
            "model=llama",
            "model.preset=tiny",
            "workload.batch_size=1",
            "workload.seq_len=32",
            "measure.repeats=3",
            "measure.warmup=0",
            "measure.flops=false",
        ]
    )
    assert record["status"] == "ok", record["error"]
    assert record["resolved"]["attention_kernel"] == {"fwd_train": "flash", "fwd_infer": "flash"}
    assert record["predicted"]["formulas"]["activations_bytes"].endswith("SDPA flash")
    assert record["flags"]["checks_failed"] == [] and record["flags"]["predicted_disagrees"] == []


@pytest.mark.slow
def test_inputs_over_an_emulated_budget_are_an_oom_record_not_a_killed_process(tmp_path):
    """The issue's case: 8 x 1024 mlp, batch 65536 x 64 rows under 1 GiB — a 17 GB input batch. It is refused
    before it is allocated (the factory op is sized on the meta device), in the `inputs` stage."""
    case = [
        "device=cpu",
        "model=mlp",
        "model.depth=8",
        "model.width=1024",
        "workload.batch_size=65536",
        "measure.repeats=3",
        "measure.warmup=0",
        "device.memory_budget_gib=1",
    ]
    record = read_record(run_sweep([case], tmp_path / "run", progress=False).paths[0])
    assert record["status"] == "oom", record["error"]
    assert record["error"]["phase"] == "inputs"
    figures = record["metrics"]["oom"]
    assert figures["request_bytes"] == 65536 * 64 * 1024 * 4  # the batch, by hand
    assert figures["live_bytes"] - figures["request_bytes"] == 8 * (1024 * 1024 + 1024) * 4  # the model was in
    assert figures["peak_bytes_before_failure"] <= GIB


def _peak_live(overrides):
    record = record_in_process([*overrides, "device.memory_budget_gib=64"])
    assert record["status"] == "ok", record["error"]
    return record["metrics"]["memory_budget"]["peak_live_bytes"]


@pytest.mark.slow
def test_a_flop_pass_out_of_memory_leaves_flops_null_and_the_case_ok():
    """Checkpointing on fits a budget that the FLOP pass (checkpointing switched off for model FLOPs) does not:
    the budget is set between the two peaks, measured here."""
    base = [
        "device=cpu",
        "model=mlp",
        "model.depth=9",
        "model.width=64",
        "workload.batch_size=4",
        "workload.seq_len=32",
        "measure.repeats=3",
        "measure.warmup=0",
        "measure.memory=false",
    ]
    on = _peak_live([*base, "checkpointing=on", "measure.flops=false"])
    off = _peak_live([*base, "checkpointing=off", "measure.flops=false"])
    assert off > on
    budget_gib = (on + off) / 2 / GIB
    record = record_in_process([*base, "checkpointing=on", f"device.memory_budget_gib={budget_gib}"])
    assert record["status"] == "ok", record["error"]
    metrics = record["metrics"]
    assert metrics["flops"] is None and metrics["flops_unavailable_reason"].startswith("BudgetExceeded")
    assert metrics["time"]["step"]["median_s"] > 0 and "flop_ratio" not in metrics


@pytest.mark.slow
def test_a_case_past_its_time_limit_is_ended_recorded_and_the_sweep_goes_on(tmp_path):
    slow = [*TINY_MLP, "model.depth=64", "model.width=512", "measure.repeats=100000", "measure.case_timeout_s=20"]
    result = run_sweep([slow, TINY_MLP], tmp_path / "run", progress=False)
    timed_out, ok = result.records
    assert ok["status"] == "ok"
    assert timed_out["status"] == "error" and timed_out["error"]["type"] == "CaseTimeout"
    assert "measure.case_timeout_s=20 s in stage" in timed_out["error"]["message"]
    assert timed_out["error"]["phase"] == "timing"  # the case reported where it was when it was ended


def test_memory_and_flop_passes_leave_no_tensor_behind_for_the_next_phase():
    """A tracked training forward whose backward never runs would keep its graph (3 x t x w here) alive into the
    next phase, through the module tracker's hooks: counted with the emulated budget's exact live bytes."""
    from harness.measure import budget as budget_mod
    from harness.measure import memory as memory_mod
    from harness.measure.case import Stage
    from harness.measure.flops import measure_flops

    _, _, workload = build(
        ["model=mlp", "model.depth=4", "model.width=64", "workload.batch_size=2", "workload.seq_len=8"]
    )
    mode = budget_mod.CpuBudget(GIB, Stage())
    with budget_mod.counting(mode, workload):
        workload.warm_up(2, 0)
        baseline = mode.live_bytes  # model, gradients reset, AdamW state, inputs
        for phase in ("fwd_train", "fwd_bwd", "step"):
            memory_mod._tracked_phase(workload, phase, (workload.model, workload.optimizer), None, 0, RssPeak())
            assert mode.live_bytes == baseline, phase
        measure_flops(workload)
        assert mode.live_bytes == baseline


def test_attention_kernel_under_autocast_is_the_one_that_runs():
    """Under amp the Python call sees fp32 q, k beside a bf16 v (a mix only the math kernel takes); autocast casts
    them before SDPA chooses. The kernel read back must be the one whose op actually runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ran(TorchDispatchMode):
        ops: set = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "scaled_dot_product" in str(func):
                self.ops.add(str(func))
            return func(*args, **(kwargs or {}))

    _, _, workload = build(["model=llama", "model.preset=tiny", "precision=amp_bf16"])
    with Ran() as ran:
        workload.run("fwd_train")
    assert ran.ops == {"aten._scaled_dot_product_flash_attention_for_cpu.default"}  # the fused CPU kernel ran
    assert kernels_used(workload)["fwd_train"] == "flash"
