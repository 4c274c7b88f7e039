"""Fixtures the tests share: an isolated model cache, real measured records. Helpers: tests/support.py."""

import os

import pytest
import torch
from support import SMALL_CASE


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # QLoRA's save_pretrained -> from_pretrained path writes a local model cache: keep tests out of ~/.cache.
    os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def real_records():
    """Records of real measured cases (tiny mlp, full AdamW and LoRA, checkpointing off and on), made once."""
    from support import record_in_process

    records = []
    for method in ("full_adamw", "lora"):
        for ckpt in ("off", "on"):
            record = record_in_process([*SMALL_CASE, f"method={method}", f"checkpointing={ckpt}"])
            assert record["status"] == "ok", record.get("error")
            records.append(record)
    return records
