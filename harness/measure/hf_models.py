"""`model=hf`: any decoder-only causal LM (or an encoder with its model.head), built by transformers from its
config.json with random weights, or loaded in NF4 through the path QLoRA users take (save_pretrained once, then
from_pretrained with a BitsAndBytesConfig), as harness/measure/models.py does for the Llama family. Nothing is
downloaded."""

from __future__ import annotations

import torch

from harness.families.hf import HfModelConfig
from harness.families.hf_inventory import build_config, hf_model, model_class
from harness.measure.models import CPU, default_dtype, nf4_config, nf4_dtype_kwargs, saved_pretrained_path


def hf_config_and_class(model: HfModelConfig):
    """transformers' config (with the attention implementation the case runs) and the class with its head."""
    described = hf_model(model)
    config = build_config(described["data"], attn_implementation=described["attn_implementation"])
    return config, model_class(config, described["head"]), described["attn_implementation"]


def build_hf(model: HfModelConfig, device: torch.device, dtype: torch.dtype, seed: int):
    config, cls, attn = hf_config_and_class(model)
    if model.weights_path:
        return cls.from_pretrained(model.weights_path, dtype=dtype, device_map={"": device}, attn_implementation=attn)
    torch.manual_seed(seed)
    # Built directly on the device in the target dtype (a config.json's torch_dtype does not choose it: the
    # case's precision does), as build_llama does.
    with torch.device(device), default_dtype(dtype):
        return cls(config)


def load_hf_nf4(model: HfModelConfig, device: torch.device, seed: int, dtype: torch.dtype | None = None):
    config, cls, attn = hf_config_and_class(model)
    path = model.weights_path or saved_pretrained_path(config, lambda: build_hf(model, CPU, torch.bfloat16, seed), seed)
    return cls.from_pretrained(
        path,
        quantization_config=nf4_config(),
        device_map={"": device},
        attn_implementation=attn,
        **nf4_dtype_kwargs(dtype),
    )
