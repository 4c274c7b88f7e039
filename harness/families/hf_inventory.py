"""Every parameter of a `model=hf` model, counted from the model itself: transformers builds it on the meta device
(no memory, no weights) and each parameter is listed once (tied ones once) with what the analytic model needs —
its module's leaf name, element count, (in, out) for a linear layer, whether it sits in a decoder layer and whether
bitsandbytes would quantize it. No formula per architecture to maintain.

Building needs torch and transformers (imported here only when a build is needed: seconds). The inventory is kept:
- `hf_inventories.json` beside this file: the shipped presets' inventories, made by `python -m
  harness.families.hf_inventory` (tests/test_hf_models.py rebuilds each and compares), used while the installed
  transformers is the release that made them;
- otherwise `$BENCH_CACHE_DIR/inventory/` (default ~/.cache/backprop-bench), keyed by the config and the
  transformers release, written after the first build.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config.fields import ConfigError
from harness.families.hf_config import (
    CAUSAL_LM,
    MASKED_LM,
    SEQUENCE_CLASSIFICATION,
    check_decoder_only,
    family,
    head,
    hf_config,
    shape,
)

if TYPE_CHECKING:
    from harness.families.hf import HfModelConfig

SHIPPED = Path(__file__).with_name("hf_inventories.json")
LAYER_INDEX = re.compile(r"\.\d+(\.|$)")  # model.layers.3.self_attn.q_proj, transformer.h.3.attn.c_attn


def cache_dir() -> Path:
    """Where the harness keeps what it makes once (saved random-weight models, inventories)."""
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "backprop-bench"))


def transformers_version() -> str:
    return metadata.version("transformers")


def config_key(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_config(data: dict, key: str = "model.config", **extra):
    """transformers' config object for a config.json dict (`extra`: e.g. attn_implementation)."""
    from transformers import AutoConfig

    check_decoder_only(data, key)
    data = json.loads(json.dumps(data))  # transformers rewrites nested dicts (rope_scaling) in place
    try:
        return AutoConfig.for_model(data["model_type"], **{k: v for k, v in data.items() if k != "model_type"}, **extra)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(key, f"transformers cannot build model_type {data['model_type']!r}: {exc}") from None


AUTO_CLASSES = {  # model.head: the transformers auto class whose mapping names the model's class
    CAUSAL_LM: "AutoModelForCausalLM",
    MASKED_LM: "AutoModelForMaskedLM",
    SEQUENCE_CLASSIFICATION: "AutoModelForSequenceClassification",
}


def model_class(transformers_config, chosen_head: str = CAUSAL_LM, key: str = "model.config"):
    """The class that builds the model with its head (a decoder's causal LM, an encoder's model.head)."""
    import transformers

    try:
        return getattr(transformers, AUTO_CLASSES[chosen_head])._model_mapping[type(transformers_config)]
    except KeyError:
        what = "causal LM" if chosen_head == CAUSAL_LM else f"{chosen_head} head"
        raise ConfigError(
            key,
            f"transformers has no {what} for model_type {transformers_config.model_type!r}; allowed: decoder-only "
            "causal LMs and the encoders' heads (model.head)",
        ) from None


def build_inventory(data: dict, key: str = "model.config", chosen_head: str | None = None) -> dict:
    """Build the model (with its head: the model_type's default where None) on the meta device and list its
    parameters."""
    import torch
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    config = build_config(data, key)
    cls = model_class(config, head(data, chosen_head), key)
    try:
        with torch.device("meta"):
            model = cls(config)
    except (AssertionError, ValueError, TypeError, RuntimeError) as exc:  # e.g. a token id outside the vocabulary
        raise ConfigError(key, f"transformers cannot build {cls.__name__} from it: {exc}") from None
    # what transformers' bitsandbytes quantizer leaves unquantized: the output embedding, tied weights, the last
    # module, the class's fp32 modules (HfQuantizer.get_modules_to_not_convert, as from_pretrained calls it)
    keep = HfQuantizer.get_modules_to_not_convert(model, None, getattr(model, "_keep_in_fp32_modules", None) or [])
    output = model.get_output_embeddings()
    seen: set[int] = set()
    counts: dict[tuple, int] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        in_layer = bool(LAYER_INDEX.search(name))
        linear = isinstance(module, (torch.nn.Linear, Conv1D))
        # would bitsandbytes make it a Linear4bit (exactly nn.Linear or Conv1D, not kept out)?
        converted = (type(module) is torch.nn.Linear or isinstance(module, Conv1D)) and should_convert_module(
            name, keep
        )
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # tied: counted where it first appears (the input embedding)
                continue
            seen.add(id(p))
            if pname == "weight" and linear:
                d_in, d_out = (module.in_features, module.out_features) if not isinstance(module, Conv1D) else p.shape
                kind = "lm_head" if module is output else leaf
                entry = (kind, p.numel(), int(d_in), int(d_out), in_layer, converted)
            elif pname == "bias":  # quantized: its linear is (Linear4bit casts the bias to the compute dtype)
                entry = ("bias", p.numel(), 0, 0, in_layer, linear and converted)
            else:
                entry = (leaf if isinstance(module, torch.nn.Embedding) else "norm", p.numel(), 0, 0, in_layer, False)
            counts[entry] = counts.get(entry, 0) + 1
    targets = sorted({e[0] for e in counts if e[2] and e[4]})
    return {
        "transformers": transformers_version(),
        "class": cls.__name__,
        "supports_sdpa": bool(getattr(cls, "_supports_sdpa", False)),
        "config": json.loads(config.to_json_string(use_diff=False)),
        "default_targets": targets,
        # [name, numel, in, out, in_layer, quantized, count]: order does not matter to any sum
        "tensors": [[*entry, n] for entry, n in sorted(counts.items())],
    }


@functools.lru_cache(maxsize=1)
def shipped_inventories() -> dict:
    try:
        return json.loads(SHIPPED.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def inventory_key(data: dict, chosen_head: str) -> str:
    """The inventory's key: the config.json's, and the head where it is not the model_type's default."""
    return config_key(data if chosen_head == head(data, None) else {**data, "harness_head": chosen_head})


@functools.lru_cache(maxsize=64)
def _inventory(text: str, key: str, chosen_head: str) -> dict:
    data = json.loads(text)
    name = inventory_key(data, chosen_head)
    version = transformers_version()
    shipped = shipped_inventories().get(name)
    if shipped and shipped["transformers"] == version:
        return shipped
    cached = cache_dir() / "inventory" / f"{name}-{version}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, json.JSONDecodeError):
        pass
    inventory = build_inventory(data, key, chosen_head)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = cached.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(inventory, sort_keys=True))
        os.replace(staging, cached)  # atomic: a concurrent build never leaves half a file
    except OSError:
        pass  # a read-only cache costs a rebuild next time, nothing else
    return inventory


def inventory(data: dict, key: str = "model.config", chosen_head: str | None = None) -> dict:
    """The inventory of the model a config.json dict builds (harness/families/hf_config.hf_config makes the dict)
    with its head (None: the model_type's default)."""
    return _inventory(json.dumps(data, sort_keys=True), key, head(data, chosen_head))


def hf_model(model: HfModelConfig) -> dict:
    """Everything the harness reads about a `model=hf` section: the config.json it builds
    (`data`), its inventory, its family and shapes, and the attention implementation it runs (null: sdpa where
    transformers supports it for the architecture, else eager). ConfigError for anything that cannot be built."""
    data = hf_config(model)
    key = "model.config" if model.config is not None else "model.preset"
    chosen = head(data, model.head)
    inv = inventory(data, key, chosen)
    attn = model.attn_implementation
    if attn is None:
        attn = "sdpa" if inv["supports_sdpa"] else "eager"
    elif attn == "sdpa" and not inv["supports_sdpa"]:
        raise ConfigError(
            "model.attn_implementation", f"transformers' {inv['class']} does not support sdpa; allowed: eager"
        )
    return {
        "data": data,
        "head": chosen,
        "inventory": inv,
        "attn_implementation": attn,
        "family": family(data["model_type"]),
        "shape": shape(inv["config"]),
    }


def write_shipped() -> Path:
    """Rebuild the shipped presets' inventories (after a transformers upgrade, or a preset added)."""
    from harness.families.hf_presets import ALL_HF_PRESETS

    body = {config_key(data): build_inventory(data, "model.preset") for data in ALL_HF_PRESETS.values()}  # defaults
    SHIPPED.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    return SHIPPED


if __name__ == "__main__":
    print(write_shipped())
