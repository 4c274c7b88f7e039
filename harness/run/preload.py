"""What the forkserver imports once, so that each case's fresh process starts with the libraries loaded (about
4.5 s of imports per case otherwise). It must never create a CUDA context: a process forked after one cannot
use CUDA. So `torch.cuda.is_available()` asks NVML (PYTORCH_NVML_BASED_CUDA_CHECK) instead of initialising the
runtime, and bitsandbytes — which queries every device's capability when imported, initialising CUDA — and
peft, which imports it, are preloaded only where there is no GPU. Checked at the end: the server refuses to
start if anything initialised CUDA (and the sweep then says so in each case's record)."""

import os

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import torch  # noqa: E402
import transformers  # noqa: E402, F401
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402, F401

import harness.measure.case  # noqa: E402, F401
import harness.measure.memory  # noqa: E402, F401

if not torch.cuda.is_available():
    import peft  # noqa: F401  (imports bitsandbytes)

if torch.cuda.is_initialized():
    raise RuntimeError("preloading initialised CUDA; forked cases could not use it (BENCH_START_METHOD=spawn)")
