"""The record each case writes, declared once: its top-level keys, the fields validation requires, the metrics
the tables read (column, path, unit), its id and hashes. harness/records/validate.py, harness/report/frame.py and
the metrics documentation (results/README.md, held to this file by tests/test_records.py) read from here; the
atomic write is harness/records/io.py, the analytic prediction harness/records/predicted.py.

Changelog (bump SCHEMA_VERSION when a field's meaning changes):
- 1.0: first version.
- 1.1: `predicted` (the analytic model's figures for the config, and their comparison with the measurement)
  and `flags.predicted_disagrees`. 1.0 records are migrated by computing both from the stored config and
  metrics (harness/records/validate.py).
- 1.2: `metrics.memory.peak_infer_bytes` is the model alone (parameters, buffers, quantization state and what
  the inference forward creates), measured before the first optimizer step; until 1.1 it also held the
  optimizer state, which serving never holds. `peak_infer_holds` says what the figure holds. Checks and
  `predicted.memory_allocated` count storages as the device's allocator holds them (512-byte blocks on CUDA).
  `provenance.environment` (differences from requirements.lock), `provenance.git_sha_source`,
  `resolved.attention_kernel`, `metrics.memory.cuda_context`, `measure.case_timeout_s`. 1.1 records are
  migrated: the inference peak less the optimizer state they also carry (constant through that phase).
  Added within 1.2 (no field changed meaning; records without them stay valid): `provenance.load` (the
  machine's load at the start and end of the case) and `flags.contended` (CONTENDED_RULE); absent: not sampled.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

from harness.config.case import canonical_json, config_hash  # noqa: F401  (the record's identity)
from harness.config.rules import PHASES

SCHEMA_VERSION = "1.2"

# Top-level keys, with what each holds.
RECORD_KEYS = {
    "schema_version": "version of this layout (harness/records/schema.py changelog)",
    "id": "content hash of the resolved config and provenance essentials (16 hex digits)",
    "config_hash": "hash of the resolved config alone: repeats of one configuration share it",
    "status": "ok | oom | error",
    "error": "null, or {type, message, traceback, phase} when status is not ok",
    "config": "the fully resolved config (every group, every field)",
    "resolved": "values derived from the config: LoRA targets, checkpoint segments, optimizer, dtypes, device",
    "command": "the command line that reproduces this case from a checkout at provenance.git_sha",
    "overrides": "the overrides of that command, as a list",
    "provenance": "harness, git, lock, software and hardware facts, UTC time",
    "metrics": "measurements; every name carries its unit (_s, _bytes, _per_s, flops)",
    "checks": "self-checks: [{name, passed, expected, measured, detail}]",
    "flags": "{noisy: [phases whose cv exceeded measure.noisy_cv], contended: whether other work competed for the "
    "cores (CONTENDED_RULE), checks_failed: [names], warnings: [text], predicted_disagrees: [quantities measured "
    "outside the prediction's tolerance]}",
    "predicted": "the analytic model (harness/predict/analytic.py) for this config: memory bytes, flop_ratio, "
    "formulas, tolerances, and `comparison` with the measurement",
}

# What metrics.memory.peak_infer_bytes is, said once: every record carries it beside the figure.
PEAK_INFER_HOLDS = (
    "the model alone: parameters + buffers (+ 4-bit quantization state) + the tensors the inference "
    "forward creates; no optimizer state, no gradients, not the input batch"
)

# The provenance that makes one run distinct from a repeat: with the config, what the record id hashes.
ID_PROVENANCE_KEYS = (
    "harness_version",
    "git_sha",
    "git_dirty",
    "lock_sha256",
    "torch",
    "cuda",
    "gpu_uuid",
    "cpu_model",
    "hostname_sha256",
    "utc_time",
)


# When other work competed with a case for the CPU, said once (flags.contended; the samples are
# provenance.load, harness/measure/provenance.py). The instant count is used, not the load average: the 1-minute
# average counts the case's own threads and the sweep's previous case, so a sweep on an idle machine would pass
# its cores by itself; the averages are kept beside it for the reader.
CONTENDED_RULE = (
    "at the start or the end of the case, the processes running outside its run (state R in /proc) plus the "
    "cores the case keeps busy (torch's threads on a CPU, one on a GPU) exceed the cores it may use"
)


def is_contended(load: Any) -> bool | None:
    """flags.contended from provenance.load by CONTENDED_RULE; None where no sample could say (not sampled, or
    /proc not readable)."""
    if not isinstance(load, dict):
        return None
    busy = load.get("case_threads")
    verdicts = []
    for sample in (load.get("start"), load.get("end")):
        if isinstance(sample, dict) and all(
            isinstance(sample.get(k), int) for k in ("running_elsewhere", "usable_cores")
        ):
            verdicts.append(
                sample["running_elsewhere"] + (busy if isinstance(busy, int) else 1) > sample["usable_cores"]
            )
    return any(verdicts) if verdicts else None


# The record's `status`, with what it means for a results folder.
STATUSES = {
    "ok": "measured: every phase ran and its figures are in metrics",
    "oom": "did not fit: error.phase says where it ran out of memory, metrics.oom the figures up to that point",
    "error": "failed (or timed out, or its process died): a log to read, not a result; submit refuses it",
}

# What a record must say about where it was measured: enough to group it by hardware and to reproduce it.
REQUIRED_PROVENANCE = {
    "harness_version": "backprop-bench version that measured it",
    "git_sha": "commit of the harness (null where neither git nor BENCH_GIT_SHA named it)",
    "git_dirty": "whether the working tree was modified (null: not known)",
    "lock_sha256": "sha256 of requirements.lock: the software stack it was meant to run",
    "python": "Python version",
    "torch": "torch version, with its build label (+cu130)",
    "device_type": "cuda or cpu: which hardware fields follow",
    "cpu_model": "CPU model name (the host CPU on a GPU machine)",
    "cpu_cores": "CPU cores: CPU results are grouped by model and core count",
    "utc_time": "when it was measured (ISO 8601, UTC)",
}
# ... and on a GPU, which one.
REQUIRED_GPU_PROVENANCE = {
    "gpu_name": "GPU model: the hardware a result is grouped under",
    "gpu_uuid": "the physical card (part of the id)",
    "gpu_memory_bytes": "the card's memory",
}
# The config fields the tables group and label by (dotted under `config`).
REQUIRED_CONFIG = {
    "model.name": "mlp, llama or hf",
    "method.name": "full_adamw, adamw8bit, lora, qlora or sgd",
    "precision.name": "fp32, bf16, amp_bf16 or amp_fp16",
    "checkpointing.enabled": "gradient checkpointing on or off",
    "workload.batch_size": "samples per step (at least 1)",
    "workload.seq_len": "tokens per sample (at least 1)",
    "measure.repeats": "timed repetitions per phase (at least 1)",
    "measure.memory": "whether the memory passes ran (then the memory metrics are required)",
    "measure.flops": "whether the FLOP passes ran",
    "device.name": "the device asked for (auto, cpu, cuda)",
}
# What an `ok` record carries, whatever else was switched off (dotted from the record's top).
REQUIRED_OK_METRICS = {
    **{f"metrics.time.{phase}.median_s": f"median time of {phase} over the timed repetitions" for phase in PHASES},
    "metrics.compute_ratio": "median paired t(fwd_bwd) / t(fwd_train): positive",
    "metrics.compute_ratio_ci95": "[lo, hi] distribution-free interval of that median",
    "metrics.throughput.step_samples_per_s": "batch size / median step time",
}
# ... and with measure.memory on: the memory categories, whole bytes.
REQUIRED_MEMORY_METRICS = {
    f"metrics.memory.{key}": meaning
    for key, meaning in {
        "params_bytes": "parameter storage (+ 4-bit quantization state)",
        "grads_bytes": "peak gradient storage in the step",
        "optimizer_bytes": "optimizer state after warm-up",
        "activations_bytes": "what the forward holds for backward",
        "peak_step_bytes": "peak of live tensor bytes in the step",
        "peak_infer_bytes": "peak of live tensor bytes in fwd_infer, the model alone",
    }.items()
}


class Metric(NamedTuple):
    """A figure the tables read from every record: its column (the unit in the name), where it is, its unit."""

    column: str
    path: str  # dotted from the record's top; a number indexes a list
    unit: str  # s | bytes | samples/s | tokens/s | ratio | count
    doc: str


# Every metric the tables and plots read, in column order (bench table's CSV keeps this order).
METRICS = [
    Metric("fwd_infer_s", "metrics.time.fwd_infer.median_s", "s", "median eval-mode forward (serving)"),
    Metric("fwd_train_s", "metrics.time.fwd_train.median_s", "s", "median train-mode forward, loss included"),
    Metric("fwd_bwd_s", "metrics.time.fwd_bwd.median_s", "s", "median forward + backward"),
    Metric("step_s", "metrics.time.step.median_s", "s", "median forward + backward + optimizer step"),
    Metric("compute_ratio", "metrics.compute_ratio", "ratio", "median paired t(fwd_bwd) / t(fwd_train)"),
    Metric("compute_ratio_ci95_lo", "metrics.compute_ratio_ci95.0", "ratio", "lower end of its 95% CI"),
    Metric("compute_ratio_ci95_hi", "metrics.compute_ratio_ci95.1", "ratio", "upper end of its 95% CI"),
    Metric(
        "backward_to_forward_ratio",
        "metrics.backward_to_forward_ratio",
        "ratio",
        "median (t(fwd_bwd) - t(fwd_train)) / t(fwd_train)",
    ),
    Metric("step_to_infer_ratio", "metrics.step_to_infer_ratio", "ratio", "median paired t(step) / t(fwd_infer)"),
    Metric("flop_ratio", "metrics.flop_ratio", "ratio", "counted FLOPs of fwd_bwd / fwd_train"),
    Metric("step_samples_per_s", "metrics.throughput.step_samples_per_s", "samples/s", "batch / median step"),
    Metric("step_tokens_per_s", "metrics.throughput.step_tokens_per_s", "tokens/s", "batch × seq_len / median step"),
    Metric(
        "infer_tokens_per_s", "metrics.throughput.infer_tokens_per_s", "tokens/s", "batch × seq_len / median fwd_infer"
    ),
    Metric("params_bytes", "metrics.memory.params_bytes", "bytes", "parameters (+ 4-bit quantization state)"),
    Metric("buffers_bytes", "metrics.memory.buffers_bytes", "bytes", "module buffers"),
    Metric("grads_bytes", "metrics.memory.grads_bytes", "bytes", "peak gradient storage in the step"),
    Metric("optimizer_bytes", "metrics.memory.optimizer_bytes", "bytes", "optimizer state"),
    Metric("activations_bytes", "metrics.memory.activations_bytes", "bytes", "held by the forward for backward"),
    Metric("temp_bytes", "metrics.memory.temp_bytes", "bytes", "temporaries at the step's peak"),
    Metric("peak_step_bytes", "metrics.memory.peak_step_bytes", "bytes", "peak live tensor bytes in the step"),
    Metric("peak_infer_bytes", "metrics.memory.peak_infer_bytes", "bytes", "peak in fwd_infer, the model alone"),
    Metric(
        "train_to_infer_memory_ratio",
        "metrics.memory.train_to_infer_memory_ratio",
        "ratio",
        "peak_step_bytes / peak_infer_bytes",
    ),
    Metric(
        "torch_max_allocated_bytes",
        "metrics.memory.torch_max_allocated_bytes",
        "bytes",
        "CUDA max_memory_allocated over the step",
    ),
    Metric("nvml_process_bytes", "metrics.memory.nvml_process_bytes", "bytes", "NVML memory of the process (CUDA)"),
    Metric("predicted_params_bytes", "predicted.memory.params_bytes", "bytes", "analytic: parameters"),
    Metric("predicted_grads_bytes", "predicted.memory.grads_bytes", "bytes", "analytic: gradients"),
    Metric("predicted_optimizer_bytes", "predicted.memory.optimizer_bytes", "bytes", "analytic: optimizer state"),
    Metric("predicted_activations_bytes", "predicted.memory.activations_bytes", "bytes", "analytic: activations"),
    Metric("predicted_flop_ratio", "predicted.flop_ratio", "ratio", "analytic: FLOP ratio fwd_bwd / fwd_train"),
    Metric(
        "first_to_last_layer_grad_norm_ratio",
        "metrics.gradients.first_to_last_layer_grad_norm_ratio",
        "ratio",
        "L2 gradient norm of the first numbered layer / the last",
    ),
    Metric(
        "fd_max_rel_error",
        "metrics.gradients.fd_max_rel_error",
        "ratio",
        "finite differences against autograd: largest error / largest checked gradient",
    ),
    Metric(
        "fd_full_gradient_forward_passes",
        "metrics.gradients.fd_full_gradient_forward_passes",
        "count",
        "forward passes a full finite-difference gradient takes (2 × parameters)",
    ),
    Metric(
        "fd_full_gradient_projected_s",
        "metrics.gradients.fd_full_gradient_projected_s",
        "s",
        "time per forward × those passes: projected, not timed",
    ),
    Metric(
        "backprop_fwd_bwd_float64_s",
        "metrics.gradients.backprop_fwd_bwd_float64_s",
        "s",
        "forward + backward of the float64 copy",
    ),
]


def record_id(stored_config: dict, provenance: dict) -> str:
    """16 hex digits of the config (as the record stores it) and the provenance essentials: one per run."""
    essentials = {k: provenance.get(k) for k in ID_PROVENANCE_KEYS}
    body = {"config": stored_config, "provenance": essentials}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def command_line(overrides: list[str]) -> str:
    """`bench run` with the case's overrides, quoted for a POSIX shell."""
    import shlex

    return " ".join(["bench", "run", *(shlex.quote(o) for o in overrides)])


def finite(obj: Any) -> Any:
    """NaN/inf are not JSON: a value that could not be measured is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


_MISSING = object()


def lookup(obj: Any, dotted: str, default: Any = _MISSING) -> Any:
    """The value at a dotted path ("metrics.time.step.median_s"; a number indexes a list: "compute_ratio_ci95.0").
    A path that is not there raises KeyError naming it, or gives `default` where one is passed. A value that is
    there and null is None, not missing."""
    for part in dotted.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif default is _MISSING:
            raise KeyError(dotted)
        else:
            return default
    return obj


def disagreements(predicted: dict) -> list[str]:
    """flags.predicted_disagrees: the quantities measured outside the prediction's tolerance."""
    return [c["name"] for c in predicted.get("comparison") or [] if not c["agrees"]]
