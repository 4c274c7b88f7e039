"""The record, declared once as a pydantic v2 model: every field's type, range and size.

Why pydantic (v2, strict): it is already in requirements.lock, its validator runs in Rust (a folder of hundreds of
records validates in well under a second), strict mode refuses the coercions a JSON reader must not make ("1" for
1, 1.0 for true), and its errors carry the location of the first bad field, which `bench submit` and every
reader print. A JSON Schema would say the same things, but every reader would still need the Python types.

What a record may hold, beyond the fields declared by name, is `Json`: null, a bool, a bounded int, a finite
float, a bounded string (no NUL, no lone surrogate), or a bounded list or object of those. Nesting depth is
bounded when the bytes are parsed (harness/records/validate.py), before any recursion. The ranges that follow
from a metric's unit (bytes non-negative and whole, times non-negative) stay in validate.py, keyed by name.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import (
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from harness.config.groups import DEVICES
from harness.config.parallel import PARALLEL_STYLES
from harness.config.rules import METHODS, PHASES, PRECISIONS, ZERO_GRAD
from harness.families.hf_config import HEADS
from harness.records.record_types import (  # noqa: F401  (MAX_* are the schema's bounds, read from here)
    MAX_DEPTH,
    MAX_INT,
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    Count,
    Float,
    Hex16,
    Int,
    Json,
    Name,
    Part,
    Positive,
    Text,
)

# Where a case can stop: the stages harness/measure/case.py and measure/ranks.py report, and the timed phases.
ERROR_PHASES = (
    *PHASES,
    "start",
    "context",
    "load",
    "inputs",
    "attention kernel",
    "warm-up",
    "timing",
    "memory pass",
    "flop count",
    "gradients",
    "rendezvous",
    "gather",
    "done",
)
STATUS = Literal["ok", "oom", "error"]
MODEL_NAMES = ("mlp", "llama", "hf")
DEVICE_TYPES = ("cpu", "cuda")


class ErrorInfo(Part):
    type: Optional[Name] = None
    message: Optional[Text] = None
    traceback: Optional[Text] = None
    phase: Optional[Literal[ERROR_PHASES]] = None


class ModelGroup(Part):
    name: Literal[MODEL_NAMES]
    preset: Optional[Name] = None
    config: Optional[Text] = None
    depth: Optional[Positive] = None
    width: Optional[Positive] = None
    activation: Optional[Name] = None
    attn_implementation: Optional[Name] = None
    head: Optional[Literal[HEADS]] = None  # model=hf: labels and tables read it
    residual: Optional[StrictBool] = None
    norm: Optional[StrictBool] = None


class MethodGroup(Part):
    name: Literal[METHODS]
    r: Optional[Positive] = None
    paged: Optional[StrictBool] = None  # a paged optimizer is its own method in every table


class PrecisionGroup(Part):
    name: Literal[PRECISIONS]


class CheckpointingGroup(Part):
    enabled: StrictBool
    segments: Optional[Positive] = None


ZERO_GRAD_NAMES = tuple(ZERO_GRAD)


class WorkloadGroup(Part):
    batch_size: Positive
    seq_len: Positive
    zero_grad: Optional[Literal[ZERO_GRAD_NAMES]] = None  # kept gradients are a different live set


class MeasureGroup(Part):
    repeats: Positive
    memory: StrictBool
    flops: StrictBool
    noisy_cv: Optional[Annotated[Float, Field(gt=0)]] = None


class DeviceGroup(Part):
    name: Literal[DEVICES]
    index: Optional[Count] = None
    memory_budget_gib: Optional[Annotated[Float, Field(gt=0, le=1 << 20)]] = None


class ParallelGroup(Part):
    name: Literal[PARALLEL_STYLES]
    nproc: Positive
    nnodes: Positive
    reshard_after_forward: Optional[StrictBool] = None


class Config(Part):
    model: ModelGroup
    method: MethodGroup
    precision: PrecisionGroup
    checkpointing: CheckpointingGroup
    workload: WorkloadGroup
    measure: MeasureGroup
    device: DeviceGroup
    parallel: Optional[ParallelGroup] = None


class Resolved(Part):
    model_type: Optional[Name] = None
    world_size: Optional[Positive] = None


class Difference(Part):
    package: Name
    installed: Optional[Name] = None
    lock: Optional[Name] = None


class Environment(Part):
    matches_lock: Optional[StrictBool] = None
    differences: Optional[Annotated[list[Difference], Field(max_length=MAX_ITEMS)]] = None
    reason: Optional[Text] = None


class LoadSample(Part):
    utc_time: Optional[Name] = None
    loadavg_1m: Optional[Annotated[Float, Field(ge=0)]] = None
    loadavg_5m: Optional[Annotated[Float, Field(ge=0)]] = None
    loadavg_15m: Optional[Annotated[Float, Field(ge=0)]] = None
    running_elsewhere: Optional[Count] = None
    usable_cores: Optional[Positive] = None


class Load(Part):
    """The machine's load at the start and the end of the case (harness/measure/provenance.py)."""

    start: Optional[LoadSample] = None
    end: Optional[LoadSample] = None
    case_threads: Optional[Positive] = None


class Provenance(Part):
    harness_version: Name
    git_sha: Optional[Name]
    git_dirty: Optional[StrictBool]
    lock_sha256: Optional[Name]
    python: Name
    torch: Name
    device_type: Literal[DEVICE_TYPES]
    cpu_model: Name
    cpu_cores: Positive
    utc_time: Annotated[str, Field(strict=True, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")]
    gpu_name: Optional[Name] = None
    gpu_uuid: Optional[Name] = None
    gpu_memory_bytes: Optional[Count] = None
    ram_bytes: Optional[Count] = None
    driver: Optional[Name] = None
    cuda: Optional[Name] = None
    git_sha_source: Optional[Name] = None
    git_sha_env_ignored: Optional[Text] = None
    environment: Optional[Environment] = None
    load: Optional[Load] = None


class PhaseTime(Part):
    median_s: Float
    p10_s: Float
    p90_s: Float
    n: Positive


class CudaContext(Part):
    context_bytes: Optional[Int] = None
    method: Optional[Text] = None


class MemoryMetrics(Part):
    """The figures readers compute with (the estimate's calibration adds and subtracts them)."""

    params_bytes: Optional[Int] = None
    grads_bytes: Optional[Int] = None
    optimizer_bytes: Optional[Int] = None
    activations_bytes: Optional[Int] = None
    peak_step_bytes: Optional[Int] = None
    peak_infer_bytes: Optional[Int] = None
    torch_max_allocated_bytes: Optional[Int] = None
    torch_max_reserved_bytes: Optional[Int] = None
    train_to_infer_memory_ratio: Optional[Float] = None
    cuda_context: Optional[CudaContext] = None


class Metrics(Part):
    time: Optional[dict[Literal[PHASES], PhaseTime]] = None
    compute_ratio: Optional[Float] = None
    compute_ratio_ci95: Optional[Annotated[list[Optional[Float]], Field(min_length=2, max_length=2)]] = None
    compute_ratio_ci_coverage: Optional[Float] = None
    throughput: Optional[dict[Name, Optional[Float]]] = None
    memory: Optional[MemoryMetrics] = None


class Check(Part):
    name: Name
    passed: StrictBool
    detail: Optional[Text] = None


class Flags(Part):
    noisy: Annotated[list[Name], Field(max_length=MAX_ITEMS)]
    # absent before the load sample (records of 1.2 made before it): not known, read as not contended
    contended: StrictBool = False
    checks_failed: Annotated[list[Name], Field(max_length=MAX_ITEMS)]
    warnings: Annotated[list[Text], Field(max_length=MAX_ITEMS)]
    # absent before schema 1.1 (added by the migration)
    predicted_disagrees: Annotated[list[Name], Field(max_length=MAX_ITEMS)] = []


class Comparison(Part):
    name: Name
    agrees: StrictBool
    measured: Optional[Float] = None
    predicted: Optional[Float] = None
    relative_error: Optional[Float] = None
    tolerance: Optional[Float] = None


class Predicted(Part):
    comparison: Optional[Annotated[list[Comparison], Field(max_length=MAX_ITEMS)]] = None
    memory: Optional[dict[Name, Optional[Float]]] = None
    flop_ratio: Optional[Float] = None


class Record(Part):
    schema_version: Annotated[str, Field(strict=True, pattern=r"^\d{1,3}\.\d{1,3}$")]
    id: Hex16
    config_hash: Hex16
    status: STATUS
    error: Optional[ErrorInfo]
    config: Config
    resolved: Resolved
    command: Text
    overrides: Annotated[list[Text], Field(max_length=MAX_ITEMS)]
    provenance: Provenance
    metrics: Metrics
    checks: Annotated[list[Check], Field(max_length=MAX_ITEMS)]
    flags: Flags
    # absent before schema 1.1 (added by the migration)
    predicted: Optional[Predicted] = None

    @field_validator("provenance", mode="after")
    @classmethod
    def _gpu_named(cls, prov: Provenance) -> Provenance:
        # a GPU record is filed under its GPU's name
        if prov.device_type == "cuda" and not prov.gpu_name:
            raise ValueError("a cuda record names its GPU (provenance.gpu_name)")
        return prov


_RECORD = TypeAdapter(Record)


def _where(record: object, loc: tuple, missing: bool) -> str:
    """The dotted path of an error's location, kept to the keys the record really has: pydantic adds the union
    member it tried (e.g. 'list[...]'), which names no field; a missing field is the location's last element."""
    parts: list[str] = []
    obj = record
    for key in loc:
        if isinstance(obj, dict) and key in obj:
            parts.append(str(key))
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{key}]"]
            obj = obj[key]
        # else: a union member's tag (e.g. 'list[...]') or a missing field: names nothing the record has
    if missing and loc:
        parts.append(str(loc[-1]))
    return ".".join(parts) or "file"


def first_problem(record: dict) -> tuple[str, str] | None:
    """(field, reason) of the first thing the declared schema refuses in `record`, or None when it passes."""
    try:
        _RECORD.validate_python(record)
    except ValidationError as exc:
        # a value of the open Json type fails once per union member: the member that got furthest into the
        # value names the field that is wrong (e.g. metrics.extra.list[3], not metrics.extra)
        located = [(_where(record, tuple(e["loc"]), e["type"] == "missing"), e) for e in exc.errors(include_url=False)]
        field, error = max(
            located,
            key=lambda pair: (pair[0].count(".") + pair[0].count("["), not pair[1]["type"].endswith("_type")),
        )
        if error["type"] == "missing":
            return field, "missing"
        shown = repr(error.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return field, f"{error['msg']} (got {shown})"
    except RecursionError:  # the parser bounds depth first; a dict built in memory might not have been
        return "file", f"nested deeper than {MAX_DEPTH} levels"
    return None
