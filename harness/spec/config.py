"""Typed configuration: one dataclass per Hydra group, registered in Hydra's ConfigStore.

The YAML files under `suites/` only set values; the schema, the one-line docs and the
validation live here. Validation names the dotted key and what is allowed, and never
rewrites a value: derived values (a preset's shapes, default LoRA targets, checkpoint
segments) are resolved into a separate `resolved` section of the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING

from harness.spec.families import HfModelConfig
from harness.spec.fields import ConfigError as ConfigError  # re-exported: callers import it from here
from harness.spec.fields import doc
from harness.spec.fields import positive_int as _positive_int
from harness.spec.fields import require as _require
from harness.spec.hf_inventory import hf_model
from harness.spec.parallel import LauncherConfig, ParallelConfig, validate_parallel
from harness.spec.presets import LLAMA_PRESETS
from harness.spec.shapes import ADAPTER_METHODS, LLAMA_SHAPE_KEYS, METHODS, PRECISIONS, QLORA_PRECISIONS, llama_shape
from harness.spec.size_bounds import check_sizes

DEVICES = ("auto", "cpu", "cuda")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
MLP_ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")
MLP_MAX_DEPTH = 4096


@dataclass
class MlpConfig:
    name: str = doc("Model family: `mlp` is depth x (Linear + activation), the deep-network case.", "mlp")
    depth: int = doc("Number of Linear + activation blocks (1..4096).", 8)
    width: int = doc("Features in and out of every Linear (square layers).", 256)
    activation: str = doc("Activation after each Linear: relu | gelu | tanh | sigmoid.", "relu")
    residual: bool = doc("Add the block input to its output (x + act(linear(x))).", False)
    norm: bool = doc("LayerNorm before each Linear.", False)
    bias: bool = doc("Linear layers carry a bias.", True)


@dataclass
class LlamaModelConfig:
    name: str = doc(
        "Model family: a transformers LlamaForCausalLM built from a LlamaConfig with random weights.", "llama"
    )
    preset: str = doc("Shape preset (see harness/spec/presets.py); the fields below, when set, override it.", "tiny")
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


@dataclass
class MethodConfig:
    name: str = doc("Training method: full_adamw | adamw8bit | lora | qlora | sgd.", MISSING)
    lr: float = doc("Learning rate of the optimizer.", 1e-4)
    weight_decay: float = doc("Decoupled weight decay (AdamW family).", 0.0)
    fused: Optional[bool] = doc("torch AdamW fused kernel; null = fused on CUDA, foreach on CPU.", None)
    min_8bit_size: int = doc("adamw8bit: tensors with fewer elements keep 32-bit state (bitsandbytes' default).", 4096)
    r: int = doc("LoRA rank (lora, qlora).", 16)
    alpha: int = doc("LoRA scaling numerator: the update is scaled by alpha / r.", 32)
    dropout: float = doc("LoRA dropout on the adapter input.", 0.0)
    target_modules: Optional[list[str]] = doc(
        "Module names to adapt; null = every linear layer of attention and MLP.", None
    )


@dataclass
class PrecisionConfig:
    name: str = doc(
        "fp32 | bf16 (weights and compute in bf16) | amp_bf16 | amp_fp16 (autocast, fp16 with a grad scaler).", "fp32"
    )


@dataclass
class CheckpointingConfig:
    enabled: bool = doc("Recompute activations in backward (non-reentrant torch.utils.checkpoint).", False)
    segments: Optional[int] = doc("mlp only: checkpoint_sequential segments; null = round(sqrt(depth)).", None)


@dataclass
class WorkloadConfig:
    batch_size: int = doc("Sequences per batch.", 2)
    seq_len: int = doc("Tokens per sequence (mlp: rows per sample, each a width-sized vector).", 64)
    seed: int = doc("Seed for weights and the synthetic batch: every phase sees the same tensors.", 0)


@dataclass
class MeasureConfig:
    warmup: int = doc("Untimed repetitions of each phase after the warm-up steps.", 2)
    repeats: int = doc("Timed repetitions of each phase, interleaved.", 10)
    warmup_steps: int = doc(
        "Full optimizer steps before anything is measured (optimizers create state at the first step); >= 2.", 2
    )
    noisy_cv: float = doc("A phase whose coefficient of variation exceeds this is flagged noisy.", 0.10)
    memory: bool = doc("Run the memory pass (tracker breakdown, per-phase peaks).", True)
    flops: bool = doc("Run the FLOP-count pass.", True)
    gradients: bool = doc(
        "Record per-layer gradient norms and a finite-difference check of autograd (the gradients suite).", False
    )
    case_timeout_s: Optional[float] = doc(
        "Seconds a case's process may run before it is ended and recorded as timed out (null: no limit).", 1800.0
    )


@dataclass
class DeviceConfig:
    name: str = doc("auto (cuda when visible, else cpu) | cpu | cuda.", "auto")
    index: int = doc("CUDA device index.", 0)
    memory_budget_gib: Optional[float] = doc(
        "Behave as if the device had this many GiB (fractional allowed): CUDA caps the allocator, CPU counts live "
        "tensors.",
        None,
    )


@dataclass
class SuiteConfig:
    name: str = doc("Suite name (the file name under suites/suite/).", MISSING)
    description: str = doc("What the suite measures, one line.", "")
    base: list[str] = doc("Overrides applied to every case.", factory=list)
    variants: list[list[str]] = doc(
        "Alternatives run in turn, each a list of overrides (e.g. one per model).", factory=lambda: [[]]
    )
    axes: dict[str, str] = doc("Key -> comma-separated values, crossed (Hydra sweep syntax).", factory=dict)


@dataclass
class BenchConfig:
    model: Any = doc("Model group: mlp | llama | hf.", MISSING)
    method: MethodConfig = doc("Method group.", MISSING)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    # how a sweep's cases are started: taken out of each case's config (harness/spec/compose.py)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    suite: Optional[SuiteConfig] = doc("A sweep: `suite=NAME` runs every case of suites/suite/NAME.yaml.", None)
    output_dir: Optional[str] = doc("Where records go; null = a new timestamped folder under results/runs/.", None)


def validate(cfg: Any) -> None:
    """Cross-field rules that a schema cannot express. Raises ConfigError before anything is built."""
    model = cfg.model
    _require(model.name in ("mlp", "llama", "hf"), "model", f"unknown model {model.name!r}; allowed: mlp, llama, hf")
    if model.name == "mlp":
        _positive_int(model.depth, "model.depth")
        _require(model.depth <= MLP_MAX_DEPTH, "model.depth", f"must be <= {MLP_MAX_DEPTH}, got {model.depth}")
        _positive_int(model.width, "model.width")
        _require(
            model.activation in MLP_ACTIVATIONS,
            "model.activation",
            f"unknown activation {model.activation!r}; allowed: {', '.join(MLP_ACTIVATIONS)}",
        )
    elif model.name == "hf":
        _require(
            model.attn_implementation in (None, *ATTN_IMPLEMENTATIONS),
            "model.attn_implementation",
            f"unknown {model.attn_implementation!r}; allowed: null, {', '.join(ATTN_IMPLEMENTATIONS)}",
        )
        hf_model(model)  # the config.json, built on the meta device once: ConfigError where it cannot be
    else:
        _require(
            model.preset in LLAMA_PRESETS,
            "model.preset",
            f"unknown preset {model.preset!r}; allowed: {', '.join(LLAMA_PRESETS)}",
        )
        for key in LLAMA_SHAPE_KEYS:
            value = getattr(model, key)
            if value is not None:
                _positive_int(value, f"model.{key}")
        shape = llama_shape(model)
        _require(
            shape["hidden_size"] % shape["num_heads"] == 0,
            "model.num_heads",
            f"hidden_size {shape['hidden_size']} is not divisible by num_heads {shape['num_heads']}",
        )
        _require(
            shape["num_heads"] % shape["num_kv_heads"] == 0,
            "model.num_kv_heads",
            f"num_heads {shape['num_heads']} is not divisible by num_kv_heads {shape['num_kv_heads']}",
        )
        _require(
            model.attn_implementation in ATTN_IMPLEMENTATIONS,
            "model.attn_implementation",
            f"unknown {model.attn_implementation!r}; allowed: {', '.join(ATTN_IMPLEMENTATIONS)}",
        )

    method = cfg.method
    _require(method.name in METHODS, "method", f"unknown method {method.name!r}; allowed: {', '.join(METHODS)}")
    _require(method.lr > 0, "method.lr", f"must be > 0, got {method.lr}")
    _require(method.weight_decay >= 0, "method.weight_decay", f"must be >= 0, got {method.weight_decay}")
    _positive_int(method.min_8bit_size, "method.min_8bit_size")
    if method.name in ADAPTER_METHODS:
        _positive_int(method.r, "method.r")
        _require(method.alpha > 0, "method.alpha", f"must be > 0, got {method.alpha}")
        _require(0.0 <= method.dropout < 1.0, "method.dropout", f"must be in [0, 1), got {method.dropout}")
        if method.target_modules is not None:
            _require(
                len(method.target_modules) > 0,
                "method.target_modules",
                "must name at least one module, or be null for every linear layer",
            )
    if method.name == "qlora":
        # prepare_model_for_kbit_training upcasts every non-quantized weight to fp32 and the NF4 matmuls
        # compute in bf16: a "pure bf16" or fp16 QLoRA would be a label the run does not honour.
        _require(
            cfg.precision.name in QLORA_PRECISIONS,
            "precision",
            f"qlora runs NF4 weights with bf16 compute and fp32 adapters; {cfg.precision.name!r} is not "
            f"allowed with it; allowed: {', '.join(QLORA_PRECISIONS)}",
        )

    _require(
        cfg.precision.name in PRECISIONS,
        "precision",
        f"unknown precision {cfg.precision.name!r}; allowed: {', '.join(PRECISIONS)}",
    )

    ckpt = cfg.checkpointing
    if ckpt.segments is not None:
        _require(
            model.name == "mlp",
            "checkpointing.segments",
            "applies to model=mlp only (llama checkpoints every decoder layer)",
        )
        _positive_int(ckpt.segments, "checkpointing.segments")
        _require(
            ckpt.segments <= model.depth,
            "checkpointing.segments",
            f"must be <= model.depth ({model.depth}), got {ckpt.segments}",
        )

    _positive_int(cfg.workload.batch_size, "workload.batch_size")
    _positive_int(cfg.workload.seq_len, "workload.seq_len")
    check_sizes(cfg)  # sizes no device holds: refused here, before anything is built
    _require(cfg.measure.warmup >= 0, "measure.warmup", f"must be >= 0, got {cfg.measure.warmup}")
    _require(
        isinstance(cfg.measure.repeats, int) and cfg.measure.repeats >= 3,
        "measure.repeats",
        f"must be an integer >= 3 (a median and a spread need several), got {cfg.measure.repeats!r}",
    )
    _require(
        cfg.measure.warmup_steps >= 2,
        "measure.warmup_steps",
        f"must be >= 2 (optimizer state is created at the first step), got {cfg.measure.warmup_steps}",
    )
    _require(cfg.measure.noisy_cv > 0, "measure.noisy_cv", f"must be > 0, got {cfg.measure.noisy_cv}")
    timeout = cfg.measure.case_timeout_s
    _require(
        timeout is None or timeout > 0,
        "measure.case_timeout_s",
        f"must be a number of seconds > 0, or null for no limit, got {timeout!r}",
    )

    _require(cfg.device.name in DEVICES, "device", f"unknown device {cfg.device.name!r}; allowed: {', '.join(DEVICES)}")
    _require(cfg.device.index >= 0, "device.index", f"must be >= 0, got {cfg.device.index}")
    budget = cfg.device.memory_budget_gib
    _require(
        budget is None or (isinstance(budget, (int, float)) and 0 < budget <= 1 << 20),
        "device.memory_budget_gib",
        f"must be a positive number of GiB (e.g. 24 or 0.5), got {budget!r}",
    )
    validate_parallel(cfg)


# Every schema, with the config-group option it stands for: Hydra's ConfigStore registers them
# (harness/spec/compose.py) and `bench run --help` lists their fields from them.
SCHEMAS: dict[str, type] = {
    "model=mlp": MlpConfig,
    "model=llama": LlamaModelConfig,
    "model=hf": HfModelConfig,
    "method": MethodConfig,
    "precision": PrecisionConfig,
    "checkpointing": CheckpointingConfig,
    "workload": WorkloadConfig,
    "measure": MeasureConfig,
    "device": DeviceConfig,
    "parallel": ParallelConfig,
    "launcher": LauncherConfig,
}


def field_docs(schema: type) -> dict[str, str]:
    """{field: its one-line doc} of a schema dataclass."""
    return {f.name: f.metadata["doc"] for f in fields(schema) if "doc" in f.metadata}
