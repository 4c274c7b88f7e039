"""Shared helpers: compose a case exactly as `bench run` does and build its real model and method."""

import os

import pytest
import torch

from harness.compose import compose_case
from harness.methods import build_trainable
from harness.workload import Workload


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # QLoRA's save_pretrained -> from_pretrained path writes a local model cache: keep tests out of ~/.cache.
    os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def build(overrides):
    cfg = compose_case(["device=cpu", *overrides])
    trainable = build_trainable(cfg, torch.device("cpu"))
    return cfg, trainable, Workload(cfg, trainable, torch.device("cpu"))


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
