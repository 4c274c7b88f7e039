"""What the forkserver imports once, so that each case's fresh process starts with the libraries loaded (about
4.5 s of imports per case otherwise). It must never create a CUDA context: a process forked after one cannot
use CUDA. So `torch.cuda.is_available()` asks NVML (PYTORCH_NVML_BASED_CUDA_CHECK) instead of initialising the
runtime, and bitsandbytes — which queries every device's capability when imported, initialising CUDA — and
peft, which imports it, are preloaded only where there is certainly no GPU. A case forked from a server that
initialised CUDA anyway fails with a record that says so and names the fallback (harness/measure/case.py)."""

import os

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import torch  # noqa: E402
import transformers  # noqa: E402, F401
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402, F401

import harness.measure.case  # noqa: E402, F401
import harness.measure.memory  # noqa: E402, F401

# Only where there certainly is no GPU: a CPU build of torch, or NVML counting 0 devices. torch.cuda.is_available()
# is not asked: where NVML cannot count (MIG, no libnvidia-ml) it falls back to the CUDA runtime, whose cuInit
# poisons every fork. A case that finds CUDA unusable anyway says so in its record (harness/measure/case.py).
if not torch.backends.cuda.is_built() or torch.cuda._device_count_nvml() == 0:
    import peft  # noqa: F401  (imports bitsandbytes)
