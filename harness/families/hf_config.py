"""`model=hf`: which config.json a case builds (a preset, or a local file, with the shape fields set on top), whether
transformers can build it as a decoder-only causal LM (or an encoder with a head, model.head), and its shapes read
the same way for every architecture.
No torch: the config is plain JSON here; harness/families/hf_inventory.py builds the model on the meta device.

Block families, each with its own activation count (harness/predict/activations_hf.py):
- llama-like: RMSNorm, rotary, gated MLP, GQA — llama, mistral, qwen2 (q/k/v biases), qwen3 (RMSNorm on each
  head's q and k), gemma2 (four norms a layer, soft-caps, sliding windows, scaled embeddings), phi3 (fused
  qkv_proj and gate_up_proj);
- gpt2: LayerNorm, GELU MLP, learned positions, Conv1D projections, dropout.
Encoders (bert) are built with the head `model.head` names (HEADS); their activations are traced.
Any other decoder-only model_type transformers knows is built and counted too (parameters exactly), its
activations traced rather than derived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config.fields import ConfigError
from harness.families.hf_presets import ALL_HF_PRESETS

if TYPE_CHECKING:
    from harness.families.hf import HfModelConfig


FAMILIES = {
    **{t: "llama-like" for t in ("llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3")},
    "gpt2": "gpt2",
}

# The model section's shape fields, and the config.json key each sets. GPT-2's file spells them its own way.
SHAPE_FIELDS = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "intermediate_size": "intermediate_size",
    "vocab_size": "vocab_size",
}
GPT2_FIELDS = {
    "hidden_size": "n_embd",
    "num_layers": "n_layer",
    "num_heads": "n_head",
    "intermediate_size": "n_inner",
    "vocab_size": "vocab_size",
}
# Where an architecture's config.json names a shape differently (resolved configs keep the file's names).
ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim"),
}
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# model.head: the output head and its loss. A decoder is a causal LM; an encoder takes one of its own heads, the
# first its default (BertForSequenceClassification: the HF "efficient training on a single GPU" doc's setup).
CAUSAL_LM, MASKED_LM, SEQUENCE_CLASSIFICATION = "causal_lm", "masked_lm", "sequence_classification"
HEADS = (CAUSAL_LM, MASKED_LM, SEQUENCE_CLASSIFICATION)  # hf_inventory.AUTO_CLASSES builds each
ENCODER_HEADS = {"bert": (SEQUENCE_CLASSIFICATION, MASKED_LM)}


def family(model_type: str) -> str | None:
    """The block family whose activation count is derived, or None (traced instead)."""
    return FAMILIES.get(model_type)


def head(data: dict, chosen: str | None, key: str = "model.head") -> str:
    """The head a config.json's model_type is built with: `chosen` (model.head), else the model_type's default."""
    model_type = data["model_type"]
    allowed = ENCODER_HEADS.get(model_type, (CAUSAL_LM,))
    if chosen is None:
        return allowed[0]
    if chosen not in allowed:
        encoders = "; ".join(f"{t}: {', '.join(h)}" for t, h in ENCODER_HEADS.items())
        raise ConfigError(
            key,
            f"{chosen!r} is no head of model_type {model_type!r}; allowed for {model_type}: {', '.join(allowed)} "
            f"(encoders {encoders}; every other model_type: {CAUSAL_LM})",
        )
    return chosen


def _read_config_file(path: str) -> dict:
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "config.json"
    if not file.is_file():
        raise ConfigError("model.config", f"no config.json at {str(file)!r}; give a local config.json file")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("model.config", f"{str(file)!r} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ConfigError("model.config", f"{str(file)!r} has no `model_type`; a transformers config.json has one")
    return data


def hf_config(model: HfModelConfig) -> dict:
    """The config.json a case builds: the preset's (or the file's) keys with the model section's shape fields on top,
    each under the key the architecture's config uses."""
    preset, path = model.preset, model.config
    if (preset is None) == (path is None):
        raise ConfigError(
            "model.preset",
            f"model=hf needs exactly one of model.preset=NAME (allowed: {', '.join(ALL_HF_PRESETS)}) or "
            f"model.config=PATH (a local config.json)" + ("; both were given" if preset is not None else ""),
        )
    if preset is not None:
        if preset not in ALL_HF_PRESETS:
            raise ConfigError("model.preset", f"unknown preset {preset!r}; allowed: {', '.join(ALL_HF_PRESETS)}")
        data = json.loads(json.dumps(ALL_HF_PRESETS[preset]))
    else:
        data = _read_config_file(path)
    fields = GPT2_FIELDS if data["model_type"] == "gpt2" else SHAPE_FIELDS
    for key in SHAPE_FIELDS:
        value = getattr(model, key)
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(
                f"model.{key}", f"{data['model_type']} has no such field; allowed here: {', '.join(fields)}"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"model.{key}", f"must be an integer > 0, got {value!r}")
        data[fields[key]] = value
    return data


def check_decoder_only(data: dict, key: str) -> None:
    """Refuse what is not a decoder-only causal LM, from the file alone (transformers' own check follows when the
    model is built: harness/families/hf_inventory.py); an encoder's head is model.head's, whatever the file's
    architectures say."""
    model_type = data["model_type"]
    if model_type in ENCODER_HEADS:
        return
    if data.get("is_encoder_decoder"):
        raise ConfigError(
            key,
            f"{model_type!r} is an encoder-decoder model (is_encoder_decoder: true); allowed: decoder-only causal "
            f"LMs, e.g. model_type {', '.join(FAMILIES)}",
        )
    architectures = data.get("architectures") or []
    if architectures and not any(str(a).endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise ConfigError(
            key,
            f"architectures {architectures} has no causal LM (a class ending in {' or '.join(CAUSAL_SUFFIXES)}); "
            "allowed: decoder-only causal LMs",
        )


def value(data: dict, key: str, default: Any = None) -> Any:
    """A config.json value under any of the names architectures give it."""
    for name in ALIASES.get(key, (key,)):
        if data.get(name) is not None:
            return data[name]
    return default


def shape(data: dict) -> dict:
    """Shapes of a resolved config (transformers' `to_dict()`, every default filled in), named alike for every
    architecture: what the activation counts read."""
    h = value(data, "hidden_size")
    nh = value(data, "num_attention_heads")
    return {
        "hidden_size": h,
        "num_layers": value(data, "num_hidden_layers"),
        "num_heads": nh,
        "num_kv_heads": data.get("num_key_value_heads") or nh,
        "head_dim": data.get("head_dim") or h // nh,
        # GPT-2's n_inner: null means 4 x n_embd (GPT2Block)
        "intermediate_size": value(data, "intermediate_size") or 4 * h,
        "vocab_size": data["vocab_size"],
        "tie_word_embeddings": data.get("tie_word_embeddings", True),
    }
