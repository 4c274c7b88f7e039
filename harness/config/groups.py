"""Typed configuration: one dataclass per Hydra group, registered in Hydra's ConfigStore, and the tree they make.

The YAML files under `suites/` only set values; the schema, the one-line docs and the validation live here (a
model family's own fields and rules in harness/families/). Hydra composes, harness/config/compose.py turns the
result into a `BenchConfig` once, and that object travels as itself: to the case process (pickled), into the
record (`to_dict`), and back from a record (`from_dict`). Validation names the dotted key and what is allowed,
and never rewrites a value: derived values (a preset's shapes, default LoRA targets, checkpoint segments) are
resolved into a separate `resolved` section of the record.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING

from harness import families
from harness.config.fields import ConfigError as ConfigError  # re-exported: callers import it from here
from harness.config.fields import doc
from harness.config.fields import positive_int as _positive_int
from harness.config.fields import require as _require
from harness.config.parallel import LauncherConfig, ParallelConfig, validate_parallel
from harness.config.rules import ADAPTER_METHODS, METHODS, PAGED_OPTIMIZERS, PRECISIONS, QLORA_VARIANTS, ZERO_GRAD
from harness.config.size_bounds import check_sizes

DEVICES = ("auto", "cpu", "cuda")


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
    paged: bool = doc(
        "bitsandbytes' paged optimizer (PagedAdamW, PagedAdamW8bit for adamw8bit): state of 100,000 elements or "
        "more in CUDA unified memory, outside PyTorch's allocator. CUDA only.",
        False,
    )

    def label(self) -> str:
        """The method as tables and citations name it: a paged optimizer is a different run."""
        return f"{self.name} (paged)" if self.paged else self.name

    def validate(self) -> None:
        _require(self.name in METHODS, "method", f"unknown method {self.name!r}; allowed: {', '.join(METHODS)}")
        _require(self.lr > 0, "method.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "method.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _positive_int(self.min_8bit_size, "method.min_8bit_size")
        _require(
            not self.paged or self.name in PAGED_OPTIMIZERS,
            "method.paged",
            f"{self.name} keeps no optimizer state to page; allowed with: {', '.join(PAGED_OPTIMIZERS)}",
        )
        if self.name not in ADAPTER_METHODS:
            return
        _positive_int(self.r, "method.r")
        _require(self.alpha > 0, "method.alpha", f"must be > 0, got {self.alpha}")
        _require(0.0 <= self.dropout < 1.0, "method.dropout", f"must be in [0, 1), got {self.dropout}")
        if self.target_modules is not None:
            _require(
                len(self.target_modules) > 0,
                "method.target_modules",
                "must name at least one module, or be null for every linear layer",
            )


@dataclass
class PrecisionConfig:
    name: str = doc(
        "fp32 | bf16 (weights and compute in bf16) | amp_bf16 | amp_fp16 (autocast, fp16 with a grad scaler).", "fp32"
    )

    def validate(self) -> None:
        _require(
            self.name in PRECISIONS, "precision", f"unknown precision {self.name!r}; allowed: {', '.join(PRECISIONS)}"
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
    zero_grad: str = doc(
        "What optimizer.zero_grad does after each step: set_to_none (free the gradients) or zeros (keep them, "
        "zero-filled, live through the next forward: torch < 2.0's default, and gradient accumulation's live set).",
        "set_to_none",
    )

    def validate(self) -> None:
        _positive_int(self.batch_size, "workload.batch_size")
        _positive_int(self.seq_len, "workload.seq_len")
        _require(
            self.zero_grad in ZERO_GRAD,
            "workload.zero_grad",
            f"unknown {self.zero_grad!r}; allowed: "
            + "; ".join(f"{name} ({meaning})" for name, meaning in ZERO_GRAD.items()),
        )


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

    def validate(self) -> None:
        _require(self.warmup >= 0, "measure.warmup", f"must be >= 0, got {self.warmup}")
        _require(
            isinstance(self.repeats, int) and self.repeats >= 3,
            "measure.repeats",
            f"must be an integer >= 3 (a median and a spread need several), got {self.repeats!r}",
        )
        _require(
            self.warmup_steps >= 2,
            "measure.warmup_steps",
            f"must be >= 2 (optimizer state is created at the first step), got {self.warmup_steps}",
        )
        _require(self.noisy_cv > 0, "measure.noisy_cv", f"must be > 0, got {self.noisy_cv}")
        timeout = self.case_timeout_s
        _require(
            timeout is None or timeout > 0,
            "measure.case_timeout_s",
            f"must be a number of seconds > 0, or null for no limit, got {timeout!r}",
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

    def validate(self) -> None:
        _require(self.name in DEVICES, "device", f"unknown device {self.name!r}; allowed: {', '.join(DEVICES)}")
        _require(self.index >= 0, "device.index", f"must be >= 0, got {self.index}")
        budget = self.memory_budget_gib
        _require(
            budget is None or (isinstance(budget, (int, float)) and 0 < budget <= 1 << 20),
            "device.memory_budget_gib",
            f"must be a positive number of GiB (e.g. 24 or 0.5), got {budget!r}",
        )

    def type_on(self, cuda_visible: bool) -> str:
        """The device type a case runs on, the one rule: `auto` is cuda when a CUDA device is visible (the caller
        says how it looked: torch in the case process, NVML where torch is not loaded), else cpu."""
        if self.name == "auto":
            return "cuda" if cuda_visible else "cpu"
        return self.name


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
    # one family's schema (harness/families): OmegaConf has no union types, so the field is untyped here
    model: Any = doc("Model group: mlp | llama | hf.", MISSING)
    method: MethodConfig = doc("Method group.", MISSING)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    # how a sweep's cases are started: None in a planned case, whose config it is not part of (compose.py)
    launcher: Optional[LauncherConfig] = field(default_factory=LauncherConfig)
    suite: Optional[SuiteConfig] = doc("A sweep: `suite=NAME` runs every case of suites/suite/NAME.yaml.", None)
    output_dir: Optional[str] = doc("Where records go; null = a new timestamped folder under results/runs/.", None)

    def validate(self) -> None:
        """Each group's rules, then those across groups. Raises ConfigError before anything is built."""
        _require(
            self.model.name in families.names(),
            "model",
            f"unknown model {self.model.name!r}; allowed: {', '.join(families.names())}",
        )
        families.of(self.model).validate(self.model, self)
        self.method.validate()
        if self.method.name == "qlora":
            variants = "; ".join(f"{p} ({v})" for p, v in QLORA_VARIANTS.items())
            _require(
                self.precision.name in QLORA_VARIANTS,
                "precision",
                f"qlora runs NF4 weights with bf16 compute; {self.precision.name!r} is not allowed with it; "
                f"allowed: {variants}",
            )
        self.precision.validate()
        self.workload.validate()
        self.measure.validate()
        self.device.validate()
        validate_parallel(self)
        check_sizes(self)  # sizes no device holds: refused here, before anything is built

    def to_dict(self) -> dict:
        """The config as plain data, as a record stores it (without the launcher: how a case started is not part
        of what it measured)."""
        out = dataclasses.asdict(self)
        out.pop("launcher")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> BenchConfig:
        """The typed tree of a record's `config`. Fields an older record lacks take their defaults (what the
        harness of its time ran: e.g. no parallel group, one process); keys no schema knows are ignored."""
        return _build(cls, {**data, "launcher": None})


@functools.cache  # resolving a schema's annotations costs more than building it: a folder builds hundreds
def _type_hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _build(schema: type, data: Any) -> Any:
    """A dataclass of `schema` from plain data, each nested group built as its own dataclass."""
    hints = _type_hints(schema)
    kwargs = {}
    for f in fields(schema):
        if f.name not in data:
            continue
        value, kind = data[f.name], hints[f.name]
        if f.name == "model" and schema is BenchConfig:
            kind = families.family(value["name"]).schema
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # Optional[X] -> X
        kwargs[f.name] = _build(kind, value) if dataclasses.is_dataclass(kind) and isinstance(value, dict) else value
    return schema(**kwargs)


# Every schema, with the config-group option it stands for: Hydra's ConfigStore registers them
# (harness/config/compose.py) and `bench run --help` lists their fields from them.
SCHEMAS: dict[str, type] = {
    **{f"model={name}": family.schema for name, family in families.families().items()},
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
