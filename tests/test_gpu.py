"""CUDA-only paths: CUDA events, fused AdamW, bitsandbytes CUDA kernels, NVML, allocator peaks, MFU.

Skipped without a GPU (CI has none); run `make test` on a GPU host to check them.
"""

import pytest
import torch

from harness.case import run_case

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

BASE = ["device=cuda", "model=llama", "model.preset=tiny", "measure.repeats=5", "measure.warmup=1"]


@pytest.mark.parametrize("method", ["full_adamw", "adamw8bit", "lora", "qlora"])
@pytest.mark.parametrize("ckpt", ["off", "on"])
def test_llama_case_on_cuda(method, ckpt):
    record = run_case([*BASE, f"method={method}", f"checkpointing={ckpt}"])
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
