"""`bench fit`: the largest batch size (or sequence length) that fits, found by measurement.

Doubling from 1 until a probe runs out of memory, then bisecting between the last value that fitted and
the first that did not; each probe is a full case in a fresh process (no allocator state carries over), and
its record is written like any other. Beside the answer: the analytic model's prediction (parameters,
gradients, optimizer state and activations against the budget; temporaries are not in it, so it is an upper
bound), labelled as a prediction.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.case import Case
from harness.config.compose import override_key
from harness.config.groups import BenchConfig, ConfigError

SEARCHABLE = ("workload.batch_size", "workload.seq_len")
PROBE_DEFAULTS = ["measure.repeats=3", "measure.warmup=0", "measure.flops=false"]
MAX_VALUE = 1 << 16


@dataclass
class Probe:
    value: int
    status: str
    phase: str | None
    file: str
    peak_step_bytes: int | None = None


@dataclass
class FitResult:
    search: str
    probes: list[Probe] = field(default_factory=list)
    max_fitting: int | None = None
    first_not_fitting: int | None = None
    stopped_by_error: str | None = None
    provenance: dict | None = None  # of the first probe: the device the search measured


def split_fit_args(overrides: list[str]) -> tuple[str, int, list[str]]:
    fit = {override_key(o): o.split("=", 1)[1] for o in overrides if override_key(o).startswith("fit.")}
    rest = [o for o in overrides if not override_key(o).startswith("fit.")]
    unknown = sorted(set(fit) - {"fit.search", "fit.max"})
    if unknown:
        raise ConfigError(unknown[0], "unknown; bench fit takes fit.search=KEY and fit.max=N")
    search = fit.get("fit.search")
    if search not in SEARCHABLE:
        raise ConfigError("fit.search", f"{search!r} cannot be searched; allowed: {', '.join(SEARCHABLE)}")
    try:
        limit = int(fit.get("fit.max", MAX_VALUE))
    except ValueError:
        raise ConfigError("fit.max", f"{fit['fit.max']!r} is not an integer") from None
    if limit < 1:
        raise ConfigError("fit.max", f"must be >= 1, got {limit}")
    if any(override_key(o) == "suite" for o in rest):
        raise ConfigError("suite", "bench fit searches one configuration; give overrides, not a suite")
    if any(override_key(o) == search for o in rest):
        raise ConfigError(search, "is what bench fit searches; leave it out of the overrides")
    return search, limit, rest


def predicted_max(
    config: BenchConfig, search: str, budget_bytes: int | None, limit: int, device_type: str = "cpu"
) -> dict:
    """Largest value whose predicted step peak (its largest moment: parameters, state, gradients, activations and
    temporaries) fits the budget (harness/predict/estimate.py, the same search `bench estimate` answers with)."""
    from harness.predict.estimate import largest, peak_function

    if budget_bytes is None:
        return {"value": None, "reason": "no budget or device size known to compare with"}
    found = largest(config, search, budget_bytes, limit, peak_function(config, device_type))
    if found["value"] is None:
        return {"value": None, "reason": "the analytic model has no activation formula for this configuration"}
    return {**found, "formula": "the step's largest live set (harness/predict/timeline.py), tensors only"}


class _ProbeFailed(Exception):
    """A probe ended in status error: the search cannot tell fitting from not fitting any more."""


def search(base: list[str], search_key: str, limit: int, output_dir: Path, start: int | None = None) -> FitResult:
    """Measure until the largest fitting value is bracketed, then bisect. From `start` (the prediction): its
    neighbour first, then a step of start / 9, doubling while the probes keep agreeing. An exact prediction takes
    2 probes, one off (below 10) at most 3; an answer within 10% of the prediction is bracketed by the third probe
    and found after log2(start / 9) more. Without a prediction: doubling from 1."""
    from harness.config.compose import make_case
    from harness.records.io import write_record
    from harness.run.process import run_in_subprocess

    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = FitResult(search=search_key)
    tried: dict[int, bool] = {}

    def probe(value: int) -> bool:
        case = make_case([*PROBE_DEFAULTS, *base, f"{search_key}={value}"])
        record = run_in_subprocess(case, logs / f"probe-{search_key.split('.')[1]}-{value}.log")
        path = write_record(record, output_dir)
        result.provenance = result.provenance or record["provenance"]
        peak = ((record.get("metrics") or {}).get("memory") or {}).get("peak_step_bytes")
        result.probes.append(Probe(value, record["status"], (record.get("error") or {}).get("phase"), path.name, peak))
        if record["status"] == "error":
            message = ((record.get("error") or {}).get("message") or "").strip().splitlines()
            result.stopped_by_error = f"probe {search_key}={value}: {message[-1] if message else 'error'}"
            raise _ProbeFailed
        tried[value] = record["status"] == "ok"
        return tried[value]

    try:
        if start:
            lo, hi = gallop(probe, min(max(1, start), limit), limit, -(-start // 9))
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if probe(mid) else (lo, mid)
            result.max_fitting, result.first_not_fitting = lo or None, hi
            return result
        value = 1
        while value <= limit and probe(value):
            result.max_fitting = value
            value *= 2
        if value > limit:
            if result.max_fitting != limit and limit not in tried and probe(limit):
                result.max_fitting = limit
            return result
        result.first_not_fitting = value
        lo, hi = result.max_fitting or 0, value
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if probe(mid):
                lo = mid
            else:
                hi = mid
        result.max_fitting = lo or None
        result.first_not_fitting = hi
    except _ProbeFailed:
        pass
    return result


def gallop(probe, value: int, limit: int, tenth: int) -> tuple[int, int | None]:
    """(largest value seen fitting or 0, smallest seen not fitting or None at the limit), from `value` outwards:
    steps of 1, then `tenth` (covering 10% either side of `value`), then doubling."""
    steps = iter([1, tenth])
    step = 1
    if probe(value):
        lo = value
        while lo < limit:
            step = next(steps, step * 2)
            nxt = min(lo + step, limit)
            if not probe(nxt):
                return lo, nxt
            lo = nxt
        return lo, None
    hi = value
    while hi > 1:
        step = next(steps, step * 2)
        nxt = max(hi - step, 1)
        if probe(nxt):
            return nxt, hi
        hi = nxt
    return 0, hi


def write_fit_json(output_dir: Path, result: FitResult, predicted: dict, device: dict, command: str) -> Path:
    from harness.records.io import write_new_file

    body = {
        "search": result.search,
        "max_fitting": result.max_fitting,
        "first_not_fitting": result.first_not_fitting,
        "measured": result.stopped_by_error is None and bool(result.probes),
        "stopped_by_error": result.stopped_by_error,
        "predicted": predicted,
        "device": device,
        "probes": [p.__dict__ for p in result.probes],
        "command": command,
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_new_file(output_dir / "fit.json", (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


def _device_bytes(on_cuda: bool, index: int) -> int | None:
    """The card's memory, for the prediction the search starts from (no budget given: the device itself)."""
    import torch

    return torch.cuda.get_device_properties(index).total_memory if on_cuda else None


@dataclass
class FitOutcome:
    result: FitResult
    predicted: dict
    device: dict
    path: Path  # fit.json
    where: str  # the device or budget, in words


def run_fit(first: Case, base: list[str], search_key: str, limit: int, output_dir: Path, command: str) -> FitOutcome:
    """The whole of `bench fit` after parsing: the measured search (`first` is the planned case at 1), the
    analytic prediction against the same budget (the emulated one, else the device the probes ran on), and
    fit.json."""
    import torch

    from harness.units import GIB

    if (output_dir / "fit.json").exists():
        raise ConfigError("output_dir", f"{output_dir}/fit.json already exists; choose another output_dir")
    cfg = first.config
    on_cuda = cfg.device.type_on(torch.cuda.is_available()) == "cuda"
    budget = cfg.device.memory_budget_gib
    if budget is None and not on_cuda:
        raise ConfigError(
            "device.memory_budget_gib",
            "bench fit on a CPU needs a budget (a CPU has no device memory to fill): e.g. device.memory_budget_gib=0.5",
        )
    budget_bytes = int(budget * GIB) if budget is not None else _device_bytes(on_cuda, cfg.device.index)
    device_type = "cuda" if on_cuda else "cpu"
    predicted = predicted_max(first.config, search_key, budget_bytes, limit, device_type)
    result = search(base, search_key, limit, output_dir, predicted.get("value") or None)
    prov = result.provenance or {}
    device = (
        {
            "type": prov.get("device_type"),
            "name": prov.get("gpu_name") or prov.get("cpu_model"),
            "memory_bytes": prov.get("gpu_memory_bytes"),
        }
        if prov
        else {"type": "cuda" if on_cuda else "cpu"}
    )
    device.update({"memory_budget_gib": budget, "budget_emulated": budget is not None})
    path = write_fit_json(output_dir, result, predicted, device, command)
    where = f"{budget} GiB (emulated budget)" if budget is not None else f"{device.get('name')}"
    return FitOutcome(result, predicted, device, path, where)
