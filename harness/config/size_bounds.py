"""Sizes that cannot run on any device, refused before anything is built (exit 2 naming the key).

`model.width=99999999999` or a batch of 10^14 samples used to build for seconds and end in an error record. The
bound is on tensor elements: no accelerator holds 2^40 elements (a TiB even at one byte each; the largest cards
hold ~0.2 TiB), so a configuration whose input, one weight matrix, or one layer's activations would exceed it is
a configuration error, not a measurement. Sizes under the bound that do not fit the device still run and
become `oom` records, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.config.fields import ConfigError

if TYPE_CHECKING:  # annotations only: groups.py imports this module
    from harness.config.groups import BenchConfig

MAX_ELEMENTS = 2**40


def _bounded(key: str, value: int, elements: int, what: str) -> None:
    if elements > MAX_ELEMENTS:
        raise ConfigError(
            key,
            f"{value} cannot run on any device: {what} would hold {elements:.3g} elements (at most "
            f"{MAX_ELEMENTS:.3g}, 2^40, are allowed); refused before anything is built",
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_sizes(cfg: BenchConfig) -> None:
    """ConfigError naming the key whose size puts a tensor beyond MAX_ELEMENTS. Called from config validation
    after the sizes are known to be positive integers."""
    batch, seq = _int(cfg.workload.batch_size) or 1, _int(cfg.workload.seq_len) or 1
    _bounded("workload.batch_size", batch, batch, "the batch")
    _bounded("workload.seq_len", seq, seq, "one sample")
    _bounded("workload.batch_size", batch, batch * seq, f"the input ({batch} x seq_len {seq})")
    model = cfg.model
    widths = {
        key: _int(getattr(model, key, None)) for key in ("width", "hidden_size", "intermediate_size", "vocab_size")
    }
    for key, width in widths.items():
        if width is None:
            continue
        _bounded(f"model.{key}", width, width * width if key == "width" else width, "one weight matrix")
        _bounded(f"model.{key}", width, batch * seq * width, f"one layer's activations (batch x seq_len x {key})")
    hidden = widths["hidden_size"]
    for key in ("intermediate_size", "vocab_size"):
        if hidden and widths[key]:
            _bounded(f"model.{key}", widths[key], hidden * widths[key], f"one weight matrix (hidden_size x {key})")
    depth = _int(getattr(model, "depth", None)) or _int(getattr(model, "num_layers", None))
    if depth and (widths["width"] or hidden):
        key = "model.depth" if _int(getattr(model, "depth", None)) else "model.num_layers"
        _bounded(key, depth, depth * (widths["width"] or hidden) ** 2, "the weights of all layers")
