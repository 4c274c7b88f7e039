"""Model families as plug-ins: one module per family (mlp.py, llama.py, hf.py), each ending in
`FAMILY = define(name, schema, transformers, globals())`.

Everything that depends on which family a case builds is asked of its Family: the schema Hydra registers as
`model=<name>`, the validation, the label reports show, the default LoRA targets, the shapes and the formulas the
analytic model reads (harness/predict/ holds the formulas; a family names the ones that count it), and how the
model is built (torch imported inside `build` only: this room needs no torch). No other module switches on a
model's name.

A new family is one new file here that defines its schema and the functions below and ends in `FAMILY = ...`;
`families()` finds it (tests/test_families.py holds every family to the interface).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: config/groups.py imports this package
    from harness.config.groups import BenchConfig
    from harness.predict.activations_hf import Block


@dataclass(frozen=True)
class Family:
    name: str  # the `model=` option
    schema: type  # the model group's dataclass
    transformers: bool  # built by transformers: token ids in, its head's loss out (else x and an MSE target)
    validate: Callable[[Any, "BenchConfig"], None]  # (model section, whole config): ConfigError naming the key
    label: Callable[[Any], str]  # short, stable name for tables and plot axes
    default_targets: Callable[[Any], tuple[str, ...]]  # LoRA targets when method.target_modules is null
    parameter_tensors: Callable[[Any], list]  # every parameter tensor (harness/predict/parameters.Tensor)
    shape: Callable[[Any], dict | None]  # transformer shapes (hidden_size, num_layers, ...), None for the mlp
    # a decoder's (Block, attention implementation, model_type) (harness/predict/activations_hf.py), None for the mlp
    block: Callable[[Any], "tuple[Block, str, str] | None"]
    context_length: Callable[[Any], int | None]  # the longest sequence the model takes (None: no limit)
    # the analytic model's formulas for this family (harness/predict/): what the training forward holds for
    # backward, (config, SDPA kernel that ran or None, device type) -> {activations_bytes, formula}; full
    # training's forward+backward over forward FLOPs, config -> {flop_ratio, formula}
    activations: Callable[["BenchConfig", str | None, str], dict]
    flop_ratio: Callable[["BenchConfig"], dict]
    # parameter_tensors grouped as FSDP2 wraps them: one list per block, the root's rest last (ValueError: unknown)
    fsdp_units: Callable[[Any], list[list]]
    build: Callable[..., Any]  # (model section, device, dtype, seed) -> torch module
    # (model section, device, seed, dtype of the weights not quantized, None for the upcast variant's) -> QLoRA's base
    build_nf4: Callable[..., Any]
    describe: Callable[[Any, dict], None]  # what was built, into the record's `resolved`


FUNCTIONS = tuple(f.name for f in fields(Family) if f.name not in ("name", "schema", "transformers"))


def define(name: str, schema: type, transformers: bool, namespace: dict) -> Family:
    """The Family of a module: its functions found under the interface's names (`namespace` is the module's
    globals()), so a module missing one fails when it is imported, naming what it lacks."""
    missing = [f for f in FUNCTIONS if not callable(namespace.get(f))]
    if missing:
        raise TypeError(f"family {name!r} does not define {', '.join(missing)} (harness/families/__init__.py)")
    return Family(name, schema, transformers, **{f: namespace[f] for f in FUNCTIONS})


_FAMILIES: dict[str, Family] = {}


def families() -> dict[str, Family]:
    """Every family module in this package, by name (found once: a new file is a new family)."""
    if not _FAMILIES:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            found = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FAMILY", None)
            if isinstance(found, Family):
                _FAMILIES[found.name] = found
    return _FAMILIES


def names() -> tuple[str, ...]:
    return tuple(families())


def family(name: str) -> Family:
    """The family called `name` (KeyError for one that does not exist: validation names them first)."""
    return families()[name]


def of(model: Any) -> Family:
    """The family of a config's model section."""
    return family(model.name)
