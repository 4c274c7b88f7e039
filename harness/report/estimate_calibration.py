"""What `bench estimate` takes from the results folder: how far the analytic model's predictions were from the
measurement of configurations like the one asked about (per hardware: n, measured / predicted), and what a GPU adds
to the tensors it holds (the CUDA context and the allocator's reserve over what it allocated), per card. Where the
folder has no such record the answer says so, and for the device figure falls back to REFERENCES.md's published
range, labelled as such. No torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import families
from harness.config.fields import ConfigError
from harness.predict import analytic, timeline
from harness.records.folder import hardware_key
from harness.records.predicted import UNREADABLE, prediction
from harness.units import GB, GIB

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig
    from harness.records.record import Record

# REFERENCES.md §2: "The CUDA context alone takes roughly 0.3-2 GB that torch's allocator counters never see (HF
# docs measured 1.3 GB)."
PUBLISHED_CONTEXT_BYTES = (int(0.3 * GB), int(2 * GB))
PUBLISHED_CONTEXT = "CUDA context 0.3-2 GB (REFERENCES.md §2, HF docs)"
PUBLISHED_SOURCE = (
    f"published range, not measured here: {PUBLISHED_CONTEXT}; the allocator's reserve over allocated is not "
    "included (no GPU record for this card in the results folder; bench estimate --replay replays one)"
)
CARD_MATCH = 0.05  # a GPU belongs to a card size when its memory is within 5% of it (80 GB: 79.6 GiB on an H100)
COMPARED = ("activations_bytes", "peak_step_bytes")


def model_kind(cfg: BenchConfig, resolved: dict | None = None) -> str | None:
    """What makes two configurations' predictions comparable: the block they are built from, its model_type (a
    model=hf record names it in `resolved`; a config is read for it); the family's name where it has no block."""
    if (resolved or {}).get("model_type"):
        return resolved["model_type"]
    try:
        decoder = families.of(cfg.model).block(cfg.model)
    except (ConfigError, OSError):  # a config.json that is not on this machine
        return None
    return decoder[2] if decoder is not None else cfg.model.name


def card_of(gpu_memory_bytes: int | None, cards) -> float | None:
    if not gpu_memory_bytes:
        return None
    gib = gpu_memory_bytes / GIB
    near = min(cards, key=lambda c: abs(c - gib))
    return near if abs(near - gib) <= CARD_MATCH * near else None


def device_overheads(records: list[Record], cards) -> dict:
    """{card: (low, high, source)}: context + reserve from the folder's GPU records of that card, else the
    published context range."""
    seen: dict = {}
    for r in records:
        prov, memory = r.provenance, r.metrics.get("memory") or {}
        card = card_of(prov.get("gpu_memory_bytes"), cards)
        context = (memory.get("cuda_context") or {}).get("context_bytes")
        reserved, allocated = memory.get("torch_max_reserved_bytes"), memory.get("torch_max_allocated_bytes")
        if r.status != "ok" or card is None or context is None or reserved is None or allocated is None:
            continue
        seen.setdefault(card, []).append((context + reserved - allocated, prov.get("gpu_name")))
    out = {}
    for card in cards:
        if card in seen:
            values = [v for v, _ in seen[card]]
            names = ", ".join(sorted({str(n) for _, n in seen[card]}))
            source = f"measured: CUDA context + allocator reserve in {len(values)} record(s) on {names}"
            out[card] = (min(values), max(values), source)
        else:
            out[card] = (*PUBLISHED_CONTEXT_BYTES, PUBLISHED_SOURCE)
    return out


def with_replayed_reserve(overheads: dict, replay: dict | None) -> dict:
    """`overheads` (device_overheads') with the reserve replayed at the configuration asked about (harness/measure/
    traced.py, replayed_reserve: reserved - allocated at the replay's peaks) added where no GPU record measured a
    reserve (the published context range alone), and said so; a measured reserve is left as it is."""
    if replay is None or replay.get("reserved_peak_bytes") is None:
        return overheads
    reserve = replay["reserved_peak_bytes"] - replay["allocated_peak_bytes"]
    said = (
        f"{PUBLISHED_CONTEXT}, not measured here, + the allocator's reserve over allocated replayed at "
        f"this batch and sequence length, {reserve / GIB:.2f} GiB (bench estimate --replay; held as it is where "
        "the largest batch and sequence are searched)"
    )
    return {
        card: (low + reserve, high + reserve, said) if source == PUBLISHED_SOURCE else (low, high, source)
        for card, (low, high, source) in overheads.items()
    }


def _ratio(measured, predicted) -> float | None:
    ok = isinstance(measured, (int, float)) and isinstance(predicted, (int, float)) and predicted > 0
    return measured / predicted if ok else None


def predicted_peak(r: Record) -> tuple[int | None, int | None]:
    """(activations, the step's peak: its largest moment, harness/predict/timeline.py) the current analytic model
    predicts for a record's config; no peak for a multi-rank record (the timeline counts one process's step)."""
    predicted = prediction(r.config, r.provenance, r.resolved, r.metrics)
    alloc, act = predicted.get("memory_allocated") or {}, (predicted.get("memory") or {}).get("activations_bytes")
    parts = [alloc.get(k) for k in ("params_bytes", "grads_bytes", "optimizer_bytes")] + [act]
    if not all(isinstance(p, int) for p in parts) or r.config.parallel.name != "none":
        return act, None
    device_type = alloc.get("device_type") or "cpu"
    kernel = ((r.resolved or {}).get("attention_kernel") or {}).get("fwd_train")
    try:
        closed = analytic.activations(r.config, kernel, device_type)
        closed = closed if closed["activations_bytes"] == act else {"activations_bytes": act}
        return act, timeline.step_moments(r.config, timeline.fixed_parts(r.config, alloc, device_type), closed)[
            "peak_step_bytes"
        ]
    except UNREADABLE:
        return act, None


def calibration(records: list[Record], cfg: BenchConfig) -> dict:
    """How far the current analytic model is from the measurements of configurations like `cfg` (same block,
    method and checkpointing), per hardware: n, and measured / predicted ranges for activations and the step's peak
    (the peak: the largest of the step's moments)."""
    kind = model_kind(cfg)
    like = (cfg.method.label(), cfg.checkpointing.enabled)
    rows: dict[str, dict] = {}
    for r in records:
        if r.status != "ok" or (r.config.method.label(), r.config.checkpointing.enabled) != like:
            continue
        if model_kind(r.config, r.resolved) != kind:
            continue
        act, peak = predicted_peak(r)
        memory = r.metrics.get("memory") or {}
        key = hardware_key(r.provenance)
        device = "gpu" if r.provenance.get("device_type") == "cuda" else "cpu"
        row = rows.setdefault(key, {"hardware": key, "device": device, "n": 0, **{k: [] for k in COMPARED}})
        row["n"] += 1
        for name, pred in (("activations_bytes", act), ("peak_step_bytes", peak)):
            ratio = _ratio(memory.get(name), pred)
            if ratio is not None:
                row[name].append(ratio)
    out = []
    for row in sorted(rows.values(), key=lambda x: x["hardware"]):
        ranges = {k: [min(row[k]), max(row[k])] if row[k] else None for k in COMPARED}
        out.append(
            {"hardware": row["hardware"], "device": row["device"], "n": row["n"], "measured_over_predicted": ranges}
        )
    what = f"{kind} {like[0]}, checkpointing {'on' if like[1] else 'off'}"
    return {"like": what, "rows": out, "note": None if out else f"not yet measured: no record of {what} in the folder"}


def error_band(found: dict) -> dict:
    """The step peak's error band for `bench estimate`'s verdicts, from calibration()'s answer: measured / predicted
    over the GPU records of such configurations (every GPU's together), else over the CPU records (labelled so:
    on a GPU the device adds the CUDA context, taken from published sizes), else none (the prediction alone)."""
    for device, label in (("gpu", "GPU"), ("cpu", "CPU")):
        rows = [r for r in found["rows"] if r["device"] == device and r["measured_over_predicted"]["peak_step_bytes"]]
        if not rows:
            continue
        ranges = [r["measured_over_predicted"]["peak_step_bytes"] for r in rows]
        n = sum(r["n"] for r in rows)
        where = ", ".join(r["hardware"] for r in rows)
        source = f"measured / predicted step peak of {n} {label} record(s) of {found['like']} ({where})"
        if device == "cpu":
            source += "; no GPU record: the band comes from CPU measurements and the device level from published "
            source += "CUDA context sizes"
        return {"low": min(r[0] for r in ranges), "high": max(r[1] for r in ranges), "source": source}
    return {
        "low": 1.0,
        "high": 1.0,
        "source": f"no error band: {found['note']}; the prediction alone, with published CUDA context sizes",
    }
