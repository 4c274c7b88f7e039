"""`model=mlp`: depth x (Linear + activation), the deep-network case (harness/measure/models.DeepMlp)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config.fields import doc, positive_int, require
from harness.families import define

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")
MAX_DEPTH = 4096
DEFAULT_TARGETS = ("linear",)


@dataclass
class MlpConfig:
    name: str = doc("Model family: `mlp` is depth x (Linear + activation), the deep-network case.", "mlp")
    depth: int = doc("Number of Linear + activation blocks (1..4096).", 8)
    width: int = doc("Features in and out of every Linear (square layers).", 256)
    activation: str = doc("Activation after each Linear: relu | gelu | tanh | sigmoid.", "relu")
    residual: bool = doc("Add the block input to its output (x + act(linear(x))).", False)
    norm: bool = doc("LayerNorm before each Linear.", False)
    bias: bool = doc("Linear layers carry a bias.", True)


def validate(model: MlpConfig, cfg: BenchConfig) -> None:
    positive_int(model.depth, "model.depth")
    require(model.depth <= MAX_DEPTH, "model.depth", f"must be <= {MAX_DEPTH}, got {model.depth}")
    positive_int(model.width, "model.width")
    require(
        model.activation in ACTIVATIONS,
        "model.activation",
        f"unknown activation {model.activation!r}; allowed: {', '.join(ACTIVATIONS)}",
    )
    segments = cfg.checkpointing.segments
    if segments is not None:
        positive_int(segments, "checkpointing.segments")
        require(
            segments <= model.depth,
            "checkpointing.segments",
            f"must be <= model.depth ({model.depth}), got {segments}",
        )


def label(model: MlpConfig) -> str:
    name = f"mlp:{model.depth}x{model.width}"
    if model.activation != "relu":
        name += f":{model.activation}"
    if model.residual:
        name += "+res"
    if model.norm:
        name += "+ln"
    return name


def default_targets(model: MlpConfig) -> tuple[str, ...]:
    return DEFAULT_TARGETS


def parameter_tensors(model: MlpConfig) -> list:
    from harness.predict.parameters import Tensor

    w, out = model.width, []
    for _ in range(model.depth):
        if model.norm:
            out += [Tensor("norm", w), Tensor("norm", w)]
        out.append(Tensor("linear", w * w, w, w))
        if model.bias:
            out.append(Tensor("bias", w))
    return out


def shape(model: MlpConfig) -> None:
    return None


def build(model: MlpConfig, device: Any, dtype: Any, seed: int) -> Any:
    from harness.measure.models import build_mlp

    return build_mlp(model, device, dtype, seed)


def build_nf4(model: MlpConfig, device: Any, seed: int, dtype: Any = None) -> Any:
    import torch

    from harness.measure.models import build_mlp, quantize_mlp_nf4

    # no prepare_model_for_kbit_training here: the upcast variant builds the weights it does not quantize in fp32
    built = build_mlp(model, torch.device("cpu"), dtype or torch.float32, seed)
    return quantize_mlp_nf4(built, device)


def describe(model: MlpConfig, resolved: dict) -> None:
    return None


def block(model: MlpConfig) -> None:
    return None  # not a decoder


def context_length(model: MlpConfig) -> None:
    return None  # rows are independent: any sequence length


def activations(cfg: BenchConfig, attention_kernel: str | None, device_type: str) -> dict:
    from harness.predict.activations import mlp_activation_bytes

    return mlp_activation_bytes(cfg)


def flop_ratio(cfg: BenchConfig) -> dict:
    from harness.predict.analytic import mlp_flop_ratio

    return mlp_flop_ratio(cfg)


def fsdp_units(model: MlpConfig) -> list[list]:
    """One unit per block (its norms, linear and bias); the root holds nothing of its own."""
    tensors = parameter_tensors(model)
    per_block = len(tensors) // model.depth
    return [tensors[i : i + per_block] for i in range(0, len(tensors), per_block)] + [[]]


FAMILY = define("mlp", MlpConfig, transformers=False, namespace=globals())
