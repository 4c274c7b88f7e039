"""The models under test: a deep MLP and a transformers Llama, both with random weights from a config.

QLoRA loads through the path users take: `save_pretrained` into a local cache, then `from_pretrained`
with a BitsAndBytesConfig (NF4, double quantization, bf16 compute). Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from harness.families.hf_inventory import cache_dir  # noqa: F401  (one cache folder for every room)
from harness.families.llama import LlamaModelConfig
from harness.families.llama import shape as llama_shape
from harness.families.mlp import MlpConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MlpBlock(nn.Module):
    def __init__(self, width: int, activation: str, residual: bool, norm: bool, bias: bool):
        super().__init__()
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.linear = nn.Linear(width, width, bias=bias)
        self.act = _ACTIVATIONS[activation]()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.linear(self.norm(x)))
        return x + y if self.residual else y


class DeepMlp(nn.Module):
    """depth x (Linear + activation); loss is the mean squared error against a fixed target."""

    def __init__(self, depth: int, width: int, activation: str, residual: bool, norm: bool, bias: bool):
        super().__init__()
        self.layers = nn.Sequential(*[MlpBlock(width, activation, residual, norm, bias) for _ in range(depth)])
        self.checkpoint_segments: int | None = None

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.checkpoint_segments and self.training and torch.is_grad_enabled():
            y = checkpoint_sequential(self.layers, self.checkpoint_segments, x, use_reentrant=False)
        else:
            y = self.layers(x)
        if target is None:
            return y
        return nn.functional.mse_loss(y.float(), target)


def llama_config(model: LlamaModelConfig):
    from transformers import LlamaConfig

    shape = llama_shape(model)
    return LlamaConfig(
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        intermediate_size=shape["intermediate_size"],
        vocab_size=shape["vocab_size"],
        rope_theta=shape["rope_theta"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        max_position_embeddings=shape["max_position_embeddings"],
        attn_implementation=model.attn_implementation,
    )


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_mlp(model: MlpConfig, device: torch.device, dtype: torch.dtype, seed: int) -> DeepMlp:
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        return DeepMlp(model.depth, model.width, model.activation, model.residual, model.norm, model.bias)


def build_llama(model: LlamaModelConfig, device: torch.device, dtype: torch.dtype, seed: int):
    from transformers import LlamaForCausalLM

    if model.weights_path:
        return LlamaForCausalLM.from_pretrained(
            model.weights_path,
            dtype=dtype,
            device_map={"": device},
            attn_implementation=model.attn_implementation,
        )
    torch.manual_seed(seed)
    # Built directly on the device in the target dtype: an 8B model in fp32 would not fit a 24 GB card.
    with torch.device(device), default_dtype(dtype):
        return LlamaForCausalLM(llama_config(model))


def saved_llama_path(model: LlamaModelConfig, seed: int) -> Path:
    """A local save_pretrained copy of the random-weight model, made once and reused (the QLoRA loading path)."""
    if model.weights_path:
        return Path(model.weights_path)
    return saved_pretrained_path(llama_config(model), lambda: build_llama(model, CPU, torch.bfloat16, seed), seed)


CPU = torch.device("cpu")


def saved_pretrained_path(hf_config: Any, build: Callable[[], Any], seed: int) -> Path:
    """Where `build()` (a random-weight model of transformers' `hf_config`, in bf16 on the CPU) is saved once with
    save_pretrained, keyed by the config, the seed and the transformers release."""
    import transformers

    key = json.dumps(
        {"config": hf_config.to_dict(), "seed": seed, "transformers": transformers.__version__},
        sort_keys=True,
        default=str,
    )
    path = cache_dir() / "models" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (path / "config.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # bf16 on disk: the compute dtype, and half the bytes of fp32 for the 8B model.
    model = build()
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        os.replace(staging, path)  # atomic: a concurrent or interrupted save never leaves a half-written model
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (path / "config.json").exists():
            raise
    return path


def nf4_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def nf4_dtype_kwargs(dtype: torch.dtype | None) -> dict:
    """from_pretrained's dtype for the weights bitsandbytes does not quantize: `dtype`, else the checkpoint's (the
    upcast variant: prepare_model_for_kbit_training casts them to fp32 afterwards)."""
    return {} if dtype is None else {"dtype": dtype}


def load_llama_nf4(model: LlamaModelConfig, device: torch.device, seed: int, dtype: torch.dtype | None = None):
    from transformers import LlamaForCausalLM

    path = saved_llama_path(model, seed)
    return LlamaForCausalLM.from_pretrained(
        path,
        quantization_config=nf4_config(),
        device_map={"": device},
        attn_implementation=model.attn_implementation,
        **nf4_dtype_kwargs(dtype),
    )


def quantize_mlp_nf4(model: DeepMlp, device: torch.device) -> DeepMlp:
    """Swap every Linear for a bitsandbytes Linear4bit (NF4, double quantization, bf16 compute); a bias keeps the
    model's dtype (Linear4bit casts it to the compute dtype at the first forward)."""
    import bitsandbytes as bnb

    for block in model.layers:
        lin = block.linear
        q = bnb.nn.Linear4bit(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            compute_dtype=torch.bfloat16,
            compress_statistics=True,
            quant_type="nf4",
            device="cpu",
        )
        # quantized from the model's own dtype (bf16 QLoRA: bf16, as a bf16 checkpoint is), which is the dtype
        # bitsandbytes dequantizes back to when the backward needs the weight
        q.weight = bnb.nn.Params4bit(
            lin.weight.data.to("cpu"), requires_grad=False, quant_type="nf4", compress_statistics=True
        )
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.data.to("cpu"), requires_grad=False)
        block.linear = q.to(device)  # Params4bit quantizes when moved to a device
    return model
