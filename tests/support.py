"""Helpers the tests share: compose a case exactly as `bench run` does and build its real model and method,
measure memory in the case's order, count what autograd saves. (Fixtures are in conftest.py.)"""

import subprocess
from pathlib import Path

import torch

from harness.config.compose import compose_case
from harness.measure.methods import build_trainable
from harness.measure.workload import Workload


def record_in_process(overrides):
    """The record of one case measured in this process (no case process): what the parent would write of it."""
    from harness.config.compose import make_case
    from harness.measure.case import run_case
    from harness.records.build import build_record

    case = make_case(list(overrides))
    return build_record(case, run_case(case))


def build(overrides):
    cfg = compose_case(["device=cpu", *overrides])
    trainable = build_trainable(cfg, torch.device("cpu"))
    return cfg, trainable, Workload(cfg, trainable, torch.device("cpu"))


def measure_memory_as_case(workload, warmup_steps=2):
    """The memory passes in the case's order: fwd_infer before the first optimizer step, the training phases
    after the warm-up steps (harness/measure/case.py)."""
    from harness.measure.memory import measure_inference_memory, measure_memory

    inference = measure_inference_memory(workload)
    workload.warm_up(warmup_steps, 0)
    return measure_memory(workload, inference)


def saved_for_backward_bytes(workload, exclude_params=True):
    """Bytes of distinct storages autograd saves for backward during one training forward (saved-tensor hooks)."""
    params = {p.untyped_storage().data_ptr() for p in workload.model.parameters()} if exclude_params else set()
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = workload.forward_loss()
    del loss
    return sum(storages.values())


SMALL_CASE = [
    "device=cpu",
    "model=mlp",
    "model.depth=2",
    "model.width=32",
    "workload.batch_size=2",
    "workload.seq_len=8",
    "measure.repeats=3",
    "measure.warmup=0",
]


def git(path: Path, *args: str) -> str:
    """git in the repository at `path`, as a throwaway committer (tests that make their own repositories)."""
    return subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
