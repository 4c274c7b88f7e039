"""Typed configuration: one dataclass per Hydra group, registered in Hydra's ConfigStore.

The YAML files under `suites/` only set values; the schema, the one-line docs and the
validation live here. Validation names the dotted key and what is allowed, and never
rewrites a value: derived values (a preset's shapes, default LoRA targets, checkpoint
segments) are resolved into a separate `resolved` section of the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.spec.presets import LLAMA_PRESETS
from harness.spec.shapes import ADAPTER_METHODS, LLAMA_SHAPE_KEYS, METHODS, PRECISIONS, QLORA_PRECISIONS, llama_shape

DEVICES = ("auto", "cpu", "cuda")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
MLP_ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")
MLP_MAX_DEPTH = 4096


class ConfigError(ValueError):
    """A config value that cannot run: names the dotted key and what is allowed (exit code 2)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def _positive_int(value: Any, key: str) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
             key, f"must be an integer > 0, got {value!r}")


@dataclass
class MlpConfig:
    name: str = "mlp"
    """Model family: `mlp` is depth x (Linear + activation), the deep-network case."""
    depth: int = 8
    """Number of Linear + activation blocks (1..4096)."""
    width: int = 256
    """Features in and out of every Linear (square layers)."""
    activation: str = "relu"
    """Activation after each Linear: relu | gelu | tanh | sigmoid."""
    residual: bool = False
    """Add the block input to its output (x + act(linear(x)))."""
    norm: bool = False
    """LayerNorm before each Linear."""
    bias: bool = True
    """Linear layers carry a bias."""


@dataclass
class LlamaModelConfig:
    name: str = "llama"
    """Model family: a transformers LlamaForCausalLM built from a LlamaConfig with random weights."""
    preset: str = "tiny"
    """Shape preset (see harness/spec/presets.py); the fields below, when set, override it."""
    hidden_size: Optional[int] = None
    """Model width d; null takes the preset's."""
    num_layers: Optional[int] = None
    """Decoder layers; null takes the preset's."""
    num_heads: Optional[int] = None
    """Attention (query) heads; null takes the preset's."""
    num_kv_heads: Optional[int] = None
    """Key/value heads (grouped-query attention); null takes the preset's."""
    intermediate_size: Optional[int] = None
    """SwiGLU hidden width; null takes the preset's."""
    vocab_size: Optional[int] = None
    """Vocabulary size; null takes the preset's."""
    attn_implementation: str = "sdpa"
    """Attention kernel: eager (materializes seq x seq scores) | sdpa (PyTorch scaled_dot_product_attention)."""
    weights_path: Optional[str] = None
    """Local directory with real weights (save_pretrained layout); null builds random weights from the config."""


@dataclass
class MethodConfig:
    name: str = MISSING
    """Training method: full_adamw | adamw8bit | lora | qlora | sgd."""
    lr: float = 1e-4
    """Learning rate of the optimizer."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW family)."""
    fused: Optional[bool] = None
    """torch AdamW fused kernel; null = fused on CUDA, foreach on CPU."""
    min_8bit_size: int = 4096
    """adamw8bit: tensors with fewer elements keep 32-bit state (bitsandbytes' default)."""
    r: int = 16
    """LoRA rank (lora, qlora)."""
    alpha: int = 32
    """LoRA scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.0
    """LoRA dropout on the adapter input."""
    target_modules: Optional[list[str]] = None
    """Module names to adapt; null = every linear layer of attention and MLP."""


@dataclass
class PrecisionConfig:
    name: str = "fp32"
    """fp32 | bf16 (weights and compute in bf16) | amp_bf16 | amp_fp16 (autocast, fp16 with a grad scaler)."""


@dataclass
class CheckpointingConfig:
    enabled: bool = False
    """Recompute activations in backward (non-reentrant torch.utils.checkpoint)."""
    segments: Optional[int] = None
    """mlp only: checkpoint_sequential segments; null = round(sqrt(depth))."""


@dataclass
class WorkloadConfig:
    batch_size: int = 2
    """Sequences per batch."""
    seq_len: int = 64
    """Tokens per sequence (mlp: rows per sample, each a width-sized vector)."""
    seed: int = 0
    """Seed for weights and the synthetic batch: every phase sees the same tensors."""


@dataclass
class MeasureConfig:
    warmup: int = 2
    """Untimed repetitions of each phase after the warm-up steps."""
    repeats: int = 10
    """Timed repetitions of each phase, interleaved."""
    warmup_steps: int = 2
    """Full optimizer steps before anything is measured (optimizers create state at the first step); >= 2."""
    noisy_cv: float = 0.10
    """A phase whose coefficient of variation exceeds this is flagged noisy."""
    memory: bool = True
    """Run the memory pass (tracker breakdown, per-phase peaks)."""
    flops: bool = True
    """Run the FLOP-count pass."""
    gradients: bool = False
    """Record per-layer gradient norms and a finite-difference check of autograd (the gradients suite)."""
    case_timeout_s: Optional[float] = 1800.0
    """Seconds a case's process may run before it is ended and recorded as timed out (null: no limit)."""


@dataclass
class DeviceConfig:
    name: str = "auto"
    """auto (cuda when visible, else cpu) | cpu | cuda."""
    index: int = 0
    """CUDA device index."""
    memory_budget_gib: Optional[float] = None
    """Behave as if the device had this many GiB (fractional allowed): CUDA caps the allocator, CPU counts live tensors."""


@dataclass
class SuiteConfig:
    name: str = MISSING
    """Suite name (the file name under suites/suite/)."""
    description: str = ""
    """What the suite measures, one line."""
    base: list[str] = field(default_factory=list)
    """Overrides applied to every case."""
    variants: list[list[str]] = field(default_factory=lambda: [[]])
    """Alternatives run in turn, each a list of overrides (e.g. one per model)."""
    axes: dict[str, str] = field(default_factory=dict)
    """Key -> comma-separated values, crossed (Hydra sweep syntax)."""


@dataclass
class BenchConfig:
    model: Any = MISSING
    """Model group: mlp | llama."""
    method: MethodConfig = MISSING
    """Method group."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    suite: Optional[SuiteConfig] = None
    """A sweep: `suite=NAME` runs every case of suites/suite/NAME.yaml."""
    output_dir: Optional[str] = None
    """Where records go; null = a new timestamped folder under results/runs/."""


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConfig)
    cs.store(group="model", name="mlp_schema", node=MlpConfig)
    cs.store(group="model", name="llama_schema", node=LlamaModelConfig)
    cs.store(group="method", name="method_schema", node=MethodConfig)
    cs.store(group="precision", name="precision_schema", node=PrecisionConfig)
    cs.store(group="checkpointing", name="checkpointing_schema", node=CheckpointingConfig)
    cs.store(group="workload", name="workload_schema", node=WorkloadConfig)
    cs.store(group="measure", name="measure_schema", node=MeasureConfig)
    cs.store(group="device", name="device_schema", node=DeviceConfig)
    cs.store(group="suite", name="suite_schema", node=SuiteConfig)


def validate(cfg: Any) -> None:
    """Cross-field rules that a schema cannot express. Raises ConfigError before anything is built."""
    model = cfg.model
    _require(model.name in ("mlp", "llama"), "model", f"unknown model {model.name!r}; allowed: mlp, llama")
    if model.name == "mlp":
        _positive_int(model.depth, "model.depth")
        _require(model.depth <= MLP_MAX_DEPTH, "model.depth", f"must be <= {MLP_MAX_DEPTH}, got {model.depth}")
        _positive_int(model.width, "model.width")
        _require(model.activation in MLP_ACTIVATIONS, "model.activation",
                 f"unknown activation {model.activation!r}; allowed: {', '.join(MLP_ACTIVATIONS)}")
    else:
        _require(model.preset in LLAMA_PRESETS, "model.preset",
                 f"unknown preset {model.preset!r}; allowed: {', '.join(LLAMA_PRESETS)}")
        for key in LLAMA_SHAPE_KEYS:
            value = getattr(model, key)
            if value is not None:
                _positive_int(value, f"model.{key}")
        shape = llama_shape(model)
        _require(shape["hidden_size"] % shape["num_heads"] == 0, "model.num_heads",
                 f"hidden_size {shape['hidden_size']} is not divisible by num_heads {shape['num_heads']}")
        _require(shape["num_heads"] % shape["num_kv_heads"] == 0, "model.num_kv_heads",
                 f"num_heads {shape['num_heads']} is not divisible by num_kv_heads {shape['num_kv_heads']}")
        _require(model.attn_implementation in ATTN_IMPLEMENTATIONS, "model.attn_implementation",
                 f"unknown {model.attn_implementation!r}; allowed: {', '.join(ATTN_IMPLEMENTATIONS)}")

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
            _require(len(method.target_modules) > 0, "method.target_modules",
                     "must name at least one module, or be null for every linear layer")
    if method.name == "qlora":
        # prepare_model_for_kbit_training upcasts every non-quantized weight to fp32 and the NF4 matmuls
        # compute in bf16: a "pure bf16" or fp16 QLoRA would be a label the run does not honour.
        _require(cfg.precision.name in QLORA_PRECISIONS, "precision",
                 f"qlora runs NF4 weights with bf16 compute and fp32 adapters; {cfg.precision.name!r} is not "
                 f"allowed with it; allowed: {', '.join(QLORA_PRECISIONS)}")

    _require(cfg.precision.name in PRECISIONS, "precision",
             f"unknown precision {cfg.precision.name!r}; allowed: {', '.join(PRECISIONS)}")

    ckpt = cfg.checkpointing
    if ckpt.segments is not None:
        _require(model.name == "mlp", "checkpointing.segments",
                 "applies to model=mlp only (llama checkpoints every decoder layer)")
        _positive_int(ckpt.segments, "checkpointing.segments")
        _require(ckpt.segments <= model.depth, "checkpointing.segments",
                 f"must be <= model.depth ({model.depth}), got {ckpt.segments}")

    _positive_int(cfg.workload.batch_size, "workload.batch_size")
    _positive_int(cfg.workload.seq_len, "workload.seq_len")
    _require(cfg.measure.warmup >= 0, "measure.warmup", f"must be >= 0, got {cfg.measure.warmup}")
    _require(isinstance(cfg.measure.repeats, int) and cfg.measure.repeats >= 3, "measure.repeats",
             f"must be an integer >= 3 (a median and a spread need several), got {cfg.measure.repeats!r}")
    _require(cfg.measure.warmup_steps >= 2, "measure.warmup_steps",
             f"must be >= 2 (optimizer state is created at the first step), got {cfg.measure.warmup_steps}")
    _require(cfg.measure.noisy_cv > 0, "measure.noisy_cv", f"must be > 0, got {cfg.measure.noisy_cv}")
    timeout = cfg.measure.case_timeout_s
    _require(timeout is None or timeout > 0, "measure.case_timeout_s",
             f"must be a number of seconds > 0, or null for no limit, got {timeout!r}")

    _require(cfg.device.name in DEVICES, "device", f"unknown device {cfg.device.name!r}; allowed: {', '.join(DEVICES)}")
    _require(cfg.device.index >= 0, "device.index", f"must be >= 0, got {cfg.device.index}")
    budget = cfg.device.memory_budget_gib
    _require(budget is None or (isinstance(budget, (int, float)) and 0 < budget <= 1 << 20),
             "device.memory_budget_gib", f"must be a positive number of GiB (e.g. 24 or 0.5), got {budget!r}")
