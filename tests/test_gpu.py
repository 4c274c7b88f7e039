"""CUDA-only paths: CUDA events, fused AdamW, bitsandbytes CUDA kernels, NVML, allocator peaks, MFU.

Skipped without a GPU (CI has none); run `make test` on a GPU host to check them.
"""

import pytest
import torch
from support import record_in_process

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def _whole_card_after_each_test():
    """A budget caps this process's allocator (set_per_process_memory_fraction): give the next test the card."""
    yield
    for index in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(1.0, index)


BASE = ["device=cuda", "model=llama", "model.preset=tiny", "measure.repeats=5", "measure.warmup=1"]


@pytest.mark.parametrize("method", ["full_adamw", "adamw8bit", "lora", "qlora"])
@pytest.mark.parametrize("ckpt", ["off", "on"])
def test_llama_case_on_cuda(method, ckpt):
    record = record_in_process([*BASE, f"method={method}", f"checkpointing={ckpt}"])
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    assert m["timing"]["timer"] == "cuda_event"
    assert record["flags"]["checks_failed"] == []
    mem = m["memory"]
    # the allocator saw at least the tensors the tracker counted
    assert mem["torch_max_allocated_bytes"] >= 0.9 * mem["peak_step_bytes"]
    assert mem["torch_max_reserved_bytes"] >= mem["torch_max_allocated_bytes"]
    assert mem["nvml_device_bytes"] and mem["nvml_device_bytes"] >= mem["torch_max_reserved_bytes"]
    if mem["nvml_process_bytes"] is None:
        assert mem["phase"]["step"]["nvml_process_unavailable_reason"]
    if method == "full_adamw":
        assert record["resolved"]["optimizer"] == "torch.optim.AdamW(fused)"
        assert 0 < m["flop_rate"]["mfu_measured_peak"] < 1
    if method == "qlora":
        assert "mfu_datasheet" not in m["flop_rate"]
    assert record["provenance"]["gpu_uuid"] and record["provenance"]["driver"]


MLP = ["device=cuda", "model=mlp", "measure.repeats=3", "measure.warmup=1"]


def test_tracker_counts_allocator_blocks_and_the_exact_checks_hold():
    """Width 33: no tensor is a whole number of 512-byte blocks. Weight 33² x 4 = 4356 B -> 4608, bias 132 B
    -> 512, fused AdamW's step 4 B -> 512 (hand count); every exact check passes and the analytic model's
    allocator figures agree."""
    record = record_in_process([*MLP, "model.depth=2", "model.width=33", "measure.flops=false"])
    assert record["status"] == "ok", record["error"]
    mem = record["metrics"]["memory"]
    assert mem["grads_bytes"] == 2 * (4608 + 512)
    assert mem["optimizer_bytes"] == mem["optimizer_bytes_direct"] == 2 * 2 * (4608 + 512) + 4 * 512
    assert record["flags"]["checks_failed"] == []
    agree = {c["name"]: c["agrees"] for c in record["predicted"]["comparison"]}
    assert agree["params_bytes"] and agree["grads_bytes"] and agree["optimizer_bytes"]


def test_inference_figures_hold_no_optimizer_state_and_device_figures_are_per_phase():
    record = record_in_process(
        [
            *MLP,
            "model.depth=8",
            "model.width=2048",
            "workload.batch_size=4",
            "workload.seq_len=128",
            "measure.flops=false",
        ]
    )
    assert record["status"] == "ok", record["error"]
    mem = record["metrics"]["memory"]
    infer, step = mem["phase"]["fwd_infer"], mem["phase"]["step"]
    # 8 x 2048² fp32 weights = 128 MiB; AdamW state twice that: not there while serving
    assert infer["torch_max_allocated_bytes"] < mem["params_bytes"] + mem["optimizer_bytes"] / 2
    assert mem["peak_infer_bytes"] < mem["params_bytes"] + mem["optimizer_bytes"] / 2
    # the cache is released before each phase: the inference phase's reserved peak is its own
    assert infer["torch_max_reserved_bytes"] < step["torch_max_reserved_bytes"]
    assert infer["allocator_retries"] == 0 and step["allocator_ooms"] == 0
    context = mem["cuda_context"]
    assert context["context_bytes"] > 0 and any("cuBLAS" in lib for lib in context["libraries_loaded"])


def test_budget_subtracts_the_context_measured_after_the_libraries_load():
    record = record_in_process(
        [*MLP, "model.depth=2", "model.width=256", "measure.flops=false", "device.memory_budget_gib=2"]
    )
    assert record["status"] == "ok", record["error"]
    budget = record["metrics"]["memory_budget"]
    assert budget["context_bytes"] > 0
    assert budget["allocator_cap_bytes"] == 2 * 1024**3 - budget["context_bytes"]


def test_float64_gradient_check_is_timed_after_its_kernels_finish():
    record = record_in_process(
        [*MLP, "model.depth=4", "model.width=64", "method=sgd", "measure.flops=false", "measure.gradients=true"]
    )
    assert record["status"] == "ok", record["error"]
    gradients = record["metrics"]["gradients"]
    assert gradients["fd_agrees"] and gradients["backprop_fwd_bwd_float64_s"] > 0


def test_llama_records_the_sdpa_kernel_that_ran():
    record = record_in_process([*BASE, "method=full_adamw", "precision=bf16", "measure.flops=false"])
    assert record["status"] == "ok", record["error"]
    kernels = record["resolved"]["attention_kernel"]
    assert set(kernels) == {"fwd_train", "fwd_infer"}
    assert all(k in ("flash", "efficient", "cudnn", "math") for k in kernels.values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_case_on_device_index_1_runs_there():
    record = record_in_process([*MLP, "model.depth=2", "model.width=256", "device.index=1"])
    assert record["status"] == "ok", record["error"]
    assert record["resolved"]["device"] == "cuda:1" and record["metrics"]["timing"]["timer"] == "cuda_event"


def test_more_ranks_than_gpus_exit_2_naming_the_key(capsys):
    from harness.cli import main

    ranks = torch.cuda.device_count() + 1
    assert main(["run", *MLP, "model.depth=2", "parallel=ddp", f"parallel.nproc={ranks}"]) == 2
    assert "parallel.nproc" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("style", ["ddp", "fsdp"])
def test_two_ranks_over_nccl_hold_what_the_per_rank_model_says(style):
    record = record_in_process([*MLP, "model.depth=4", "model.width=513", f"parallel={style}", "parallel.nproc=2"])
    assert record["status"] == "ok", record["error"]
    assert record["provenance"]["distributed"]["backend"] == "nccl"
    for entry in record["metrics"]["ranks"]:
        for key in ("params_bytes", "grads_bytes", "optimizer_bytes"):
            assert entry["memory"][key] == entry["predicted_memory"][key], (entry["rank"], key)
        assert entry["memory"]["torch_max_allocated_bytes"] >= entry["memory"]["peak_step_bytes"] * 0.9
