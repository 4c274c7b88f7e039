"""`model=llama`: a transformers LlamaForCausalLM built from a LlamaConfig of a shape preset (llama_presets.py)
with random weights, or loaded from a local save_pretrained directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from harness.config.fields import doc, positive_int, require
from harness.families import define
from harness.families.llama_presets import LLAMA_PRESETS

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# what the transformers families checkpoint: every decoder layer, so checkpointing.segments has no meaning there
SEGMENTS_MLP_ONLY = "applies to model=mlp only (llama checkpoints every decoder layer)"


@dataclass
class LlamaModelConfig:
    name: str = doc(
        "Model family: a transformers LlamaForCausalLM built from a LlamaConfig with random weights.", "llama"
    )
    preset: str = doc(
        "Shape preset (harness/families/llama_presets.py); the fields below, when set, override it.", "tiny"
    )
    hidden_size: Optional[int] = doc("Model width d; null takes the preset's.", None)
    num_layers: Optional[int] = doc("Decoder layers; null takes the preset's.", None)
    num_heads: Optional[int] = doc("Attention (query) heads; null takes the preset's.", None)
    num_kv_heads: Optional[int] = doc("Key/value heads (grouped-query attention); null takes the preset's.", None)
    intermediate_size: Optional[int] = doc("SwiGLU hidden width; null takes the preset's.", None)
    vocab_size: Optional[int] = doc("Vocabulary size; null takes the preset's.", None)
    attn_implementation: str = doc(
        "Attention kernel: eager (materializes seq x seq scores) | sdpa (PyTorch scaled_dot_product_attention).", "sdpa"
    )
    weights_path: Optional[str] = doc(
        "Local directory with real weights (save_pretrained layout); null builds random weights from the config.", None
    )


def shape(model: LlamaModelConfig) -> dict:
    """The preset's shape with the explicitly set fields on top, plus the preset's fixed fields (rope_theta, tied
    embeddings, context length)."""
    out = dict(LLAMA_PRESETS[model.preset])
    for key in SHAPE_KEYS:
        if getattr(model, key) is not None:
            out[key] = getattr(model, key)
    return out


def validate(model: LlamaModelConfig, cfg: BenchConfig) -> None:
    require(
        model.preset in LLAMA_PRESETS,
        "model.preset",
        f"unknown preset {model.preset!r}; allowed: {', '.join(LLAMA_PRESETS)}",
    )
    for key in SHAPE_KEYS:
        value = getattr(model, key)
        if value is not None:
            positive_int(value, f"model.{key}")
    s = shape(model)
    require(
        s["hidden_size"] % s["num_heads"] == 0,
        "model.num_heads",
        f"hidden_size {s['hidden_size']} is not divisible by num_heads {s['num_heads']}",
    )
    require(
        s["num_heads"] % s["num_kv_heads"] == 0,
        "model.num_kv_heads",
        f"num_heads {s['num_heads']} is not divisible by num_kv_heads {s['num_kv_heads']}",
    )
    require(
        model.attn_implementation in ATTN_IMPLEMENTATIONS,
        "model.attn_implementation",
        f"unknown {model.attn_implementation!r}; allowed: {', '.join(ATTN_IMPLEMENTATIONS)}",
    )
    require(cfg.checkpointing.segments is None, "checkpointing.segments", SEGMENTS_MLP_ONLY)


def label(model: LlamaModelConfig) -> str:
    return f"llama:{model.preset}" + (f":{model.attn_implementation}" if model.attn_implementation != "sdpa" else "")


def default_targets(model: LlamaModelConfig) -> tuple[str, ...]:
    return DEFAULT_TARGETS


def parameter_tensors(model: LlamaModelConfig) -> list:
    from harness.predict.parameters import Tensor

    s = shape(model)
    h, ff, nh, kv = s["hidden_size"], s["intermediate_size"], s["num_heads"], s["num_kv_heads"]
    hd = h // nh
    out = [Tensor("embed_tokens", s["vocab_size"] * h)]
    for _ in range(s["num_layers"]):
        out += [
            Tensor("q_proj", h * nh * hd, h, nh * hd, True),
            Tensor("k_proj", h * kv * hd, h, kv * hd, True),
            Tensor("v_proj", h * kv * hd, h, kv * hd, True),
            Tensor("o_proj", nh * hd * h, nh * hd, h, True),
            Tensor("gate_proj", h * ff, h, ff, True),
            Tensor("up_proj", h * ff, h, ff, True),
            Tensor("down_proj", ff * h, ff, h, True),
            Tensor("norm", h, in_layer=True),
            Tensor("norm", h, in_layer=True),
        ]
    out.append(Tensor("norm", h))
    if not s["tie_word_embeddings"]:
        out.append(Tensor("lm_head", s["vocab_size"] * h, h, s["vocab_size"]))
    return out


def build(model: LlamaModelConfig, device: Any, dtype: Any, seed: int) -> Any:
    from harness.measure.models import build_llama

    return build_llama(model, device, dtype, seed)


def build_nf4(model: LlamaModelConfig, device: Any, seed: int, dtype: Any = None) -> Any:
    from harness.measure.models import load_llama_nf4

    return load_llama_nf4(model, device, seed, dtype)


def describe(model: LlamaModelConfig, resolved: dict) -> None:
    return None


def block(model: LlamaModelConfig) -> tuple:
    """The Llama family's decoder layer (harness/predict/activations_hf.py counts every block family)."""
    from harness.predict.activations_hf import Block

    s = shape(model)
    layer = Block(
        hidden=s["hidden_size"],
        layers=s["num_layers"],
        heads=s["num_heads"],
        kv_heads=s["num_kv_heads"],
        head_dim=s["hidden_size"] // s["num_heads"],
        ff=s["intermediate_size"],
        vocab=s["vocab_size"],
    )
    return layer, model.attn_implementation, "llama"


def context_length(model: LlamaModelConfig) -> int:
    return shape(model)["max_position_embeddings"]


# a decoder's formulas, shared by the transformers families (hf.py names them too)
def decoder_activations(cfg: BenchConfig, attention_kernel: str | None, device_type: str) -> dict:
    from harness.predict.activations import transformer_activations

    return transformer_activations(cfg, attention_kernel, device_type)


def decoder_flop_ratio(cfg: BenchConfig) -> dict:
    from harness.predict.analytic import transformer_flop_ratio

    return transformer_flop_ratio(cfg)


def fsdp_units(model: LlamaModelConfig) -> list[list]:
    """One unit per decoder layer; the root holds the embeddings, the final norm and an untied lm_head."""
    tensors = parameter_tensors(model)
    s = shape(model)
    layers = s["num_layers"]
    per_layer = (len(tensors) - 2 - (0 if s["tie_word_embeddings"] else 1)) // layers
    body = tensors[1 : 1 + layers * per_layer]
    root = [tensors[0]] + tensors[1 + layers * per_layer :]
    return [body[i : i + per_layer] for i in range(0, len(body), per_layer)] + [root]


# the interface names a decoder's formulas (hf.py shares them)
activations, flop_ratio = decoder_activations, decoder_flop_ratio

FAMILY = define("llama", LlamaModelConfig, transformers=True, namespace=globals())
