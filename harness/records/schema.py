"""The record each case writes: its schema, its id, and the atomic, no-clobber write.

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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

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
    "flags": "{noisy: [phases whose cv exceeded measure.noisy_cv], checks_failed: [names], warnings: [text], "
             "predicted_disagrees: [quantities measured outside the prediction's tolerance]}",
    "predicted": "the analytic model (harness/spec/analytic.py) for this config: memory bytes, flop_ratio, formulas, "
                 "tolerances, and `comparison` with the measurement",
}

# What metrics.memory.peak_infer_bytes is, said once: every record carries it beside the figure.
PEAK_INFER_HOLDS = ("the model alone: parameters + buffers (+ 4-bit quantization state) + the tensors the inference "
                    "forward creates; no optimizer state, no gradients, not the input batch")

ID_PROVENANCE_KEYS = ("harness_version", "git_sha", "git_dirty", "lock_sha256", "torch", "cuda", "gpu_uuid",
                      "cpu_model", "hostname_sha256", "utc_time")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def record_id(config: dict, provenance: dict) -> str:
    essentials = {k: provenance.get(k) for k in ID_PROVENANCE_KEYS}
    return hashlib.sha256(canonical_json({"config": config, "provenance": essentials}).encode()).hexdigest()[:16]


def command_line(overrides: list[str]) -> str:
    import shlex

    return " ".join(["bench", "run", *(shlex.quote(o) for o in overrides)])


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: a value that could not be measured is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def attach_prediction(record: dict) -> dict:
    """Predicted beside measured: the analytic model's figures for the record's config and where the
    measurement falls outside their tolerance (a finding about the model or the harness, never hidden)."""
    from harness.spec import analytic

    device_type = (record.get("provenance") or {}).get("device_type") or "cpu"
    kernel = ((record.get("resolved") or {}).get("attention_kernel") or {}).get("fwd_train")
    try:
        predicted = analytic.predict(record["config"], device_type, kernel)
    except (KeyError, TypeError, ValueError) as exc:  # a config the model cannot read: say so
        predicted = {"memory": {}, "flop_ratio": None, "unavailable_reason": f"{type(exc).__name__}: {exc}"}
    predicted["comparison"] = analytic.compare(predicted, record.get("metrics") or {})
    record["predicted"] = _finite(predicted)
    record.setdefault("flags", {})["predicted_disagrees"] = [c["name"] for c in predicted["comparison"]
                                                             if not c["agrees"]]
    return record


def build_record(*, config: dict, overrides: list[str], provenance: dict, status: str, metrics: dict | None = None,
                 resolved: dict | None = None, checks: list | None = None, error: dict | None = None) -> dict:
    checks = checks or []
    metrics = metrics or {}
    noisy = sorted(p for p, t in metrics.get("time", {}).items() if t.get("noisy"))
    return attach_prediction(_finite({
        "schema_version": SCHEMA_VERSION,
        "id": record_id(config, provenance),
        "config_hash": config_hash(config),
        "status": status,
        "error": error,
        "config": config,
        "resolved": resolved or {},
        "command": command_line(overrides),
        "overrides": list(overrides),
        "provenance": provenance,
        "metrics": metrics,
        "checks": checks,
        "flags": {"noisy": noisy, "checks_failed": [c["name"] for c in checks if not c["passed"]],
                  "warnings": list(metrics.get("warnings", []))},
    }))


def record_filename(record: dict) -> str:
    cfg = record["config"]
    ckpt = "on" if cfg["checkpointing"]["enabled"] else "off"
    return f"{cfg['model']['name']}_{cfg['method']['name']}_ckpt-{ckpt}_{record['config_hash'][:8]}_{record['id'][:8]}.json"


def write_new_file(final: Path, data: bytes) -> Path:
    """Write atomically and never over an existing file: temp file in the same directory, fsync, then a hard
    link into place, which fails with FileExistsError rather than replace what is there. A crash at any point
    leaves either no file or the whole file under `final`, never a partial one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=final.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o444)  # records are immutable data, readable by everyone sharing the folder
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, final)
    finally:
        os.unlink(tmp)
    return final


def record_bytes(record: dict) -> bytes:
    """The one serialisation of a record on disk: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_record(record: dict, directory: Path) -> Path:
    return write_new_file(directory / record_filename(record), record_bytes(record))


def read_record(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
