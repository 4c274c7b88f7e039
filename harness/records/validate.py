"""Machine checks on a record before it enters a results folder, and migration of older schema versions.

A record is data: it is parsed as JSON (never unpickled, never imported), and every number in it is checked
against what its name says it is (bytes are non-negative integers, times and rates non-negative, no NaN or
infinity). Each failure names the field, so `bench submit` can say in one line what was wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

from harness import __version__
from harness.records.record_schema import MAX_DEPTH, first_problem
from harness.records.schema import (
    RECORD_KEYS,
    REQUIRED_CONFIG,
    REQUIRED_GPU_PROVENANCE,
    REQUIRED_MEMORY_METRICS,
    REQUIRED_OK_METRICS,
    REQUIRED_PROVENANCE,
    SCHEMA_VERSION,
    STATUSES,
    config_hash,
    lookup,
    record_id,
)

# A shared folder is no place for logs or model files dropped in by mistake; records are ~10 KB.
MAX_RECORD_BYTES = 1024**2

# Config fields that count something and so must be at least 1.
AT_LEAST_ONE_CONFIG = ("workload.batch_size", "workload.seq_len", "measure.repeats")


class RecordInvalid(ValueError):
    """A record refused: `field` is the dotted path of what was wrong (or "file" for the file itself)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# Older schema versions and the function that lifts a record of that version to the next one. Version 1.0 is
# the first; a migration is added here whenever SCHEMA_VERSION moves, so old submissions stay readable.
def _from_1_0(record: dict) -> dict:
    """1.0 -> 1.1: the prediction is a pure function of the stored config, compared with the stored metrics."""
    from harness.records.predicted import attach_prediction

    return attach_prediction(record)


def _from_1_1(record: dict) -> dict:
    """1.1 -> 1.2: the inference peak was measured with the optimizer state alive (never with gradients: they
    were reset before each phase). The state did not change during that phase, so the model-alone figure is
    exactly the recorded peak less `optimizer_bytes`; the recorded figure is kept beside it under its meaning."""
    from harness.records.predicted import attach_prediction
    from harness.records.schema import PEAK_INFER_HOLDS

    memory = (record.get("metrics") or {}).get("memory")
    if (
        isinstance(memory, dict)
        and isinstance(memory.get("peak_infer_bytes"), int)
        and isinstance(memory.get("optimizer_bytes"), int)
    ):
        with_state = memory["peak_infer_bytes"]
        memory["peak_infer_with_optimizer_state_bytes"] = with_state
        memory["peak_infer_bytes"] = with_state - memory["optimizer_bytes"]
        memory["peak_infer_holds"] = (
            PEAK_INFER_HOLDS + "; derived when read (schema 1.1 -> 1.2): the recorded "
            "fwd_infer peak, which held the optimizer state, less optimizer_bytes"
        )
        infer_phase = (memory.get("phase") or {}).get("fwd_infer")
        if isinstance(infer_phase, dict) and isinstance(infer_phase.get("tracked_peak_bytes"), int):
            infer_phase["tracked_peak_with_optimizer_state_bytes"] = infer_phase["tracked_peak_bytes"]
            infer_phase["tracked_peak_bytes"] -= memory["optimizer_bytes"]
        if memory["peak_infer_bytes"] > 0 and isinstance(memory.get("peak_step_bytes"), int):
            memory["train_to_infer_memory_ratio"] = memory["peak_step_bytes"] / memory["peak_infer_bytes"]
    return attach_prediction(record)


MIGRATIONS: dict[str, tuple[str, Callable[[dict], dict]]] = {"1.0": ("1.1", _from_1_0), "1.1": ("1.2", _from_1_1)}


def _version_tuple(version: Any) -> tuple[int, int]:
    if not isinstance(version, str):
        raise RecordInvalid("schema_version", f"must be a string like {SCHEMA_VERSION!r}, got {version!r}")
    try:
        major, minor = version.split(".")
        return int(major), int(minor)
    except ValueError:
        raise RecordInvalid("schema_version", f"{version!r} is not MAJOR.MINOR") from None


def migrate(record: dict) -> dict:
    """Bring a record of any version this harness knows up to SCHEMA_VERSION; refuse newer or unknown ones."""
    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return record
    if _version_tuple(version) > _version_tuple(SCHEMA_VERSION):
        prov = record.get("provenance")
        writer = prov.get("harness_version") if isinstance(prov, dict) else None
        writer = writer if isinstance(writer, str) and len(writer) <= 40 else "a newer release"
        raise RecordInvalid(
            "schema_version",
            f"{version} is newer than this harness reads (backprop-bench {__version__} reads up to "
            f"{SCHEMA_VERSION}); it was written by backprop-bench {writer}: update to that version",
        )
    seen = set()
    while version != SCHEMA_VERSION:
        if version not in MIGRATIONS or version in seen:
            known = ", ".join(sorted([*MIGRATIONS, SCHEMA_VERSION]))
            raise RecordInvalid("schema_version", f"{version} is not a version this harness knows (known: {known})")
        seen.add(version)
        older, (version, lift) = version, MIGRATIONS[version]
        try:
            record = lift(record)
        except Exception as exc:  # the schema held before the lift; whatever it still met, a refusal not a crash
            raise RecordInvalid("schema_version", f"cannot be migrated from {older}: {type(exc).__name__}: {exc}")
        record["schema_version"] = version
    return record


def _reject_constant(name: str) -> Any:
    raise RecordInvalid("file", f"{name} is not a number JSON allows (a value that was not measured is null)")


# Strings taken out, what is left of JSON nests by its brackets: the depth is known before anything recurses.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
MAX_INT_DIGITS = 400  # the schema bounds ints to 64 bits and names the field; this only keeps int() cheap


def _depth(text: str) -> int:
    depth = deepest = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _parse_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise RecordInvalid("file", f"an integer of {len(digits)} digits; numbers in a record fit in 64 bits")
    return int(digits)


def parse(data: bytes) -> dict:
    """Bytes -> dict, refusing oversize files, non-UTF-8, invalid JSON, NaN/Infinity, nesting deeper than the
    schema's MAX_DEPTH, integers of hundreds of digits and non-object tops."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordInvalid("file", f"{len(data)} bytes is over the {MAX_RECORD_BYTES}-byte limit for a record")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordInvalid("file", f"not UTF-8 text (byte {exc.start}); records are JSON, never pickle") from None
    if _depth(text) > MAX_DEPTH:
        raise RecordInvalid("file", f"nested {_depth(text)} levels deep; a record nests at most {MAX_DEPTH}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise RecordInvalid("file", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise RecordInvalid("file", f"the top level must be a JSON object, not {type(obj).__name__}")
    return obj


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(path: str, key: str, value: Any) -> None:
    """The unit suffix of a metric's name says what range its value may take."""
    if not _is_number(value):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordInvalid(path, f"{value} is not finite")
    if key.endswith("_bytes"):
        if not isinstance(value, int) and not float(value).is_integer():
            raise RecordInvalid(path, f"{value} is not a whole number of bytes")
        # temp_bytes is defined by subtraction at the tracker's peak and cannot go below zero either.
        if value < 0:
            raise RecordInvalid(path, f"{value} bytes is negative")
    elif key.endswith(("_s", "_per_s", "_elements")) or key in (
        "n",
        "cv",
        "compute_ratio",
        "flop_ratio",
        "model_flop_ratio",
        "step_to_infer_ratio",
    ):
        if value < 0:
            raise RecordInvalid(path, f"{value} is negative")


def _walk_numbers(obj: Any, path: str, key: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _walk_numbers(v, f"{path}.{k}", str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk_numbers(v, f"{path}[{i}]", key)
    else:
        _check_number(path, key, obj)


def _require(record: dict, dotted: str, kind: type | tuple[type, ...] | None = None) -> Any:
    try:
        value = lookup(record, dotted)
    except KeyError:
        raise RecordInvalid(dotted, "missing") from None
    if kind is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise RecordInvalid(dotted, f"must be {names}, got {value!r}"[:200])
    return value


def conform(record: dict) -> None:
    """The declared schema (harness/records/record_schema.py), whole: RecordInvalid naming the first field."""
    problem = first_problem(record)
    if problem is not None:
        raise RecordInvalid(*problem)


def check(record: dict) -> dict:
    """Validate a parsed record (migrating it first); returns the record at SCHEMA_VERSION or raises."""
    if "schema_version" not in record:
        raise RecordInvalid("schema_version", "missing: not a backprop-bench record")
    version = record["schema_version"]
    if version != SCHEMA_VERSION and (not isinstance(version, str) or version not in MIGRATIONS):
        migrate(record)  # newer or unknown: refused for its version, before a schema it was not written to
    conform(record)  # what the migrations read is typed before they read it
    if record["schema_version"] != SCHEMA_VERSION:
        record = migrate(record)
        conform(record)
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise RecordInvalid(missing[0], "missing" + (f" (also {', '.join(missing[1:])})" if missing[1:] else ""))
    status = record["status"]
    if status not in STATUSES:
        raise RecordInvalid("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    if status == "error":
        raise RecordInvalid("status", "error: a case that failed is not a result (its log says why); rerun it")

    if not isinstance(record["provenance"], dict) or not record["provenance"]:
        raise RecordInvalid("provenance", "missing: a result without its hardware and software is not citable")
    for key in REQUIRED_PROVENANCE:
        _require(record, f"provenance.{key}")
    if record["provenance"]["device_type"] == "cuda":
        for key in REQUIRED_GPU_PROVENANCE:
            _require(record, f"provenance.{key}")
    if not isinstance(record["config"], dict):
        raise RecordInvalid("config", "must be an object")
    for key in REQUIRED_CONFIG:
        _require(record, f"config.{key}")
    for key in AT_LEAST_ONE_CONFIG:
        value = _require(record, f"config.{key}", int)
        if value < 1:
            raise RecordInvalid(f"config.{key}", f"{value} must be at least 1")

    _check_identity(record)
    _walk_numbers(record["metrics"], "metrics")
    if status == "oom":
        _require(record, "error.message", str)
        return record
    _check_ok_metrics(record)
    return record


def _check_identity(record: dict) -> None:
    """The id and config hash recomputed from the content: a record edited after it was written is refused."""
    expected_hash = config_hash(record["config"])
    if record["config_hash"] != expected_hash:
        raise RecordInvalid(
            "config_hash",
            f"{record['config_hash']!r} does not match the config "
            f"(it hashes to {expected_hash}): edited after it was written?",
        )
    expected_id = record_id(record["config"], record["provenance"])
    if record["id"] != expected_id:
        raise RecordInvalid(
            "id",
            f"{record['id']!r} does not match the config and provenance (they hash to "
            f"{expected_id}): edited after it was written?",
        )


def _check_ok_metrics(record: dict) -> None:
    """What an ok record must carry: the timing medians, the ratio and its interval, memory, checks."""
    for path in REQUIRED_OK_METRICS:
        if path == "metrics.compute_ratio_ci95":
            ci = _require(record, path, list)
            if len(ci) != 2:
                raise RecordInvalid(path, f"must be [lo, hi], got {ci!r}")
            continue
        value = _require(record, path, (int, float))
        if path == "metrics.compute_ratio" and value <= 0:
            raise RecordInvalid(path, f"{value} must be positive")
    if record["config"]["measure"]["memory"]:
        for path in REQUIRED_MEMORY_METRICS:
            _require(record, path, int)
    if not isinstance(record["checks"], list):
        raise RecordInvalid("checks", "must be a list")
    for i, c in enumerate(record["checks"]):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("passed"), bool):
            raise RecordInvalid(f"checks[{i}]", "must be {name: str, passed: bool, ...}")


def load_bytes(data: bytes) -> dict:
    """parse + check: the whole validation of one file's bytes."""
    return check(parse(data))
