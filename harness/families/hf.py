"""`model=hf`: any decoder-only causal LM (or a BERT encoder with the head model.head names) transformers builds
from a config.json (a shipped preset or a local file, shape fields set on top) with random weights; the config.json
rules are in hf_config.py, the parameter inventory in hf_inventory.py, the build in harness/measure/hf_models.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.config.fields import doc, require
from harness.families import define
from harness.families.hf_config import SHAPE_FIELDS, value
from harness.families.hf_inventory import hf_model
from harness.families.llama import SEGMENTS_MLP_ONLY

# a decoder's activations and FLOP ratio are read from its Block, whichever family built it
from harness.families.llama import decoder_activations as activations  # noqa: F401 (the interface's name)
from harness.families.llama import decoder_flop_ratio as flop_ratio  # noqa: F401

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


@dataclass
class HfModelConfig:
    name: str = doc(
        "Model family: any decoder-only causal LM (or BERT encoder) transformers builds from a config.json, with "
        "random weights.",
        "hf",
    )
    preset: Optional[str] = doc(
        "A release's config.json shipped with the harness (harness/families/hf_presets.py); or model.config.", None
    )
    config: Optional[str] = doc("A local config.json (or its directory), instead of model.preset.", None)
    hidden_size: Optional[int] = doc("Model width; null takes the config's.", None)
    num_layers: Optional[int] = doc("Decoder layers; null takes the config's.", None)
    num_heads: Optional[int] = doc("Attention (query) heads; null takes the config's.", None)
    num_kv_heads: Optional[int] = doc("Key/value heads (grouped-query attention); null takes the config's.", None)
    head_dim: Optional[int] = doc("Width of one attention head; null takes the config's.", None)
    intermediate_size: Optional[int] = doc("MLP hidden width; null takes the config's.", None)
    vocab_size: Optional[int] = doc("Vocabulary size; null takes the config's.", None)
    attn_implementation: Optional[str] = doc(
        "eager | sdpa; null = sdpa where transformers supports it for the architecture, else eager.", None
    )
    head: Optional[str] = doc(
        "causal_lm | masked_lm | sequence_classification: the output head and its loss; null = the model_type's "
        "default (decoders: causal_lm, the only one allowed; bert: sequence_classification, or masked_lm).",
        None,
    )
    weights_path: Optional[str] = doc(
        "Local directory with real weights (save_pretrained layout); null builds random weights from the config.", None
    )


def validate(model: HfModelConfig, cfg: BenchConfig) -> None:
    require(
        model.attn_implementation in (None, *ATTN_IMPLEMENTATIONS),
        "model.attn_implementation",
        f"unknown {model.attn_implementation!r}; allowed: null, {', '.join(ATTN_IMPLEMENTATIONS)}",
    )
    hf_model(model)  # the config.json, built on the meta device once: ConfigError where it cannot be
    require(cfg.checkpointing.segments is None, "checkpointing.segments", SEGMENTS_MLP_ONLY)


def label(model: HfModelConfig) -> str:
    """A preset's name, or the folder of the config.json it was built from, with the shape fields set on top (and
    the attention implementation and head where set)."""
    source = model.preset or Path(str(model.config)).parent.name
    shape_set = ",".join(f"{k}={getattr(model, k)}" for k in SHAPE_FIELDS if getattr(model, k) is not None)
    return (
        f"hf:{source}"
        + (f"[{shape_set}]" if shape_set else "")
        + (f":{model.attn_implementation}" if model.attn_implementation else "")
        + (f":{model.head}" if model.head else "")
    )


def default_targets(model: HfModelConfig) -> tuple[str, ...]:
    """The leaf names of the linears inside the decoder layers of the model itself."""
    return tuple(hf_model(model)["inventory"]["default_targets"])


def parameter_tensors(model: HfModelConfig) -> list:
    """Every parameter of the model transformers builds, listed on the meta device."""
    from harness.predict.parameters import Tensor

    out = []
    for name, numel, d_in, d_out, in_layer, quantized, count in hf_model(model)["inventory"]["tensors"]:
        out += [Tensor(name, numel, d_in, d_out, in_layer, quantized)] * count
    return out


def shape(model: HfModelConfig) -> dict:
    return hf_model(model)["shape"]


def build(model: HfModelConfig, device: Any, dtype: Any, seed: int) -> Any:
    from harness.measure.hf_models import build_hf

    return build_hf(model, device, dtype, seed)


def build_nf4(model: HfModelConfig, device: Any, seed: int, dtype: Any = None) -> Any:
    from harness.measure.hf_models import load_hf_nf4

    return load_hf_nf4(model, device, seed, dtype)


def describe(model: HfModelConfig, resolved: dict) -> None:
    """What the config.json builds, for reports that group by architecture."""
    described = hf_model(model)
    resolved["model_type"] = described["data"]["model_type"]
    resolved["architecture"] = described["inventory"]["class"]
    resolved["head"] = described["head"]
    resolved["attn_implementation"] = described["attn_implementation"]
    resolved["hf_config"] = described["data"]  # the config.json it was built from: a path alone can change


def block(model: HfModelConfig) -> tuple:
    """The decoder layer of the architecture the config.json names (its model_type sets the block family)."""
    from harness.predict.activations_hf import hf_block

    described = hf_model(model)
    model_type = described["data"]["model_type"]
    layer = hf_block(model_type, described["shape"], described["inventory"]["config"], described["head"])
    return layer, described["attn_implementation"], model_type


def context_length(model: HfModelConfig) -> int | None:
    """max_position_embeddings under any of its names (GPT-2's n_positions), None where the config has none."""
    config = hf_model(model)["inventory"]["config"]
    return value(config, "max_position_embeddings") or config.get("n_positions")


def fsdp_units(model: HfModelConfig) -> list[list]:
    raise ValueError("the per-rank model knows the units of mlp and llama, not of model=hf")


FAMILY = define("hf", HfModelConfig, transformers=True, namespace=globals())
