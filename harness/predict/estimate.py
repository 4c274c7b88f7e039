"""`bench estimate`: what a configuration should take on a GPU, from the analytic model alone (no torch, no weights,
no measurement): bytes per category for a training step and for inference, their peak, and for common cards
whether it fits and the largest batch size and sequence length that would. What the device adds (the CUDA context,
the allocator's reserve) and how far such predictions were from measurement come from the results folder
(harness/report/estimate_calibration.py); this module only counts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from harness import families
from harness.config.rules import ADAPTER_METHODS, COMPUTE_BYTES
from harness.predict import analytic, timeline
from harness.predict.activations_hf import inference_bytes
from harness.units import GIB

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig

# Cards people ask about, by the memory they are sold with (read as GiB of device memory, as nvidia-smi reports
# them); `--card` adds others.
CARDS_GB = (8, 12, 16, 24, 32, 40, 48, 80, 141)
SEARCHED = ("workload.batch_size", "workload.seq_len")
MAX_VALUE = 1 << 16  # the largest batch or sequence length searched (bench fit's fit.max default too)
STEP_CATEGORIES = ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes")
# The step's peak is the largest of its moments (harness/predict/timeline.py), not the sum of the categories:
# gradients appear as activations are freed, and the loss's backward, the layers' and the optimizer step make
# temporaries of their own.
PEAK_HOLDS = "the largest live set of the step's moments (harness/predict/timeline.py), at the {moment}"
# What every prediction assumes of the training loop: the standard one, where backward leaves every gradient whole
# until the optimizer step (optimizer-in-backward loops, torchtune's among them, free each as it is applied).
GRADIENTS_HELD = (
    "gradients are held whole until the optimizer step (the standard loop; an optimizer-in-backward loop holds "
    "far less)"
)

# (config, device type) -> {activations_bytes, formula}: a traced prediction of a run on that device type
Fallback = Callable[["BenchConfig", str], dict]


def with_value(cfg: BenchConfig, key: str, value: int) -> BenchConfig:
    """A copy of `cfg` with one field (`section.field`) set: the configs it was made from are left as they are."""
    section, field = key.split(".")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{field: value})})


def activations(cfg: BenchConfig, device_type: str, fallback: Fallback | None = None) -> dict:
    """The closed form (harness/predict/activations.py), else `fallback`'s traced figure, else null with the reason."""
    closed = analytic.activations(cfg, None, device_type)
    if closed["activations_bytes"] is not None or fallback is None:
        return {**closed, "source": "closed form" if closed["activations_bytes"] is not None else None}
    traced = fallback(cfg, device_type)
    reason = f"{closed['formula']}; {traced['formula']}"
    return {**traced, "formula": reason, "source": "traced" if traced["activations_bytes"] is not None else None}


def inference(cfg: BenchConfig, params_bytes: int) -> dict:
    """The eval-mode forward's peak: the weights plus what the forward holds at once, counted for decoders
    (activations_hf.py)."""
    decoder = families.of(cfg.model).block(cfg.model)
    if decoder is None or decoder[0].style == "bert" or cfg.precision.name.startswith("amp"):
        return {"peak_infer_bytes": None, "formula": "not derived for this model (an encoder) or under autocast"}
    block, attn, _ = decoder
    b, s = cfg.workload.batch_size, cfg.workload.seq_len
    e = COMPUTE_BYTES[cfg.precision.name]
    adapters = cfg.method.name in ADAPTER_METHODS
    return {
        "peak_infer_bytes": params_bytes + inference_bytes(block, b, s, e, attn, adapters),
        "formula": "parameters + the forward's largest live set (input embeddings, residuals, an MLP or the logits)",
    }


def step(cfg: BenchConfig, device_type: str = "cuda", fallback: Fallback | None = None) -> dict:
    """Bytes per category of a training step (as the device's allocator holds them), the live set at each of its
    moments, its peak (the largest moment, named in `peak_moment`) and inference's."""
    predicted = analytic.predict(cfg, device_type)
    allocated = predicted["memory_allocated"]
    act = activations(cfg, device_type, fallback)
    out = {k: allocated[k] for k in STEP_CATEGORIES[:3]}
    out["activations_bytes"] = act["activations_bytes"]
    out.update(timeline.step_moments(cfg, timeline.fixed_parts(cfg, allocated, device_type), act))
    out.update(inference(cfg, allocated["params_bytes"]))
    out["params"] = predicted["params"]
    if "optimizer_paged_bytes" in predicted["memory"]:
        out["optimizer_paged_bytes"] = predicted["memory"]["optimizer_paged_bytes"]
    out["formulas"] = {"activations_bytes": act["formula"], "peak_infer_bytes": out.pop("formula")}
    out["activations_source"] = act["source"]
    return out


def peak_function(
    config: BenchConfig, device_type: str = "cuda", traced: dict | None = None
) -> Callable[[BenchConfig], int | None]:
    """A config's predicted peak as batch and sequence length change (parameters, gradients and optimizer state do
    not): the largest moment of the step (harness/predict/timeline.py) with the closed form's activations, else with
    `traced` (a step() figure from a trace at `config`) scaled with batch x sequence — exact for fused attention
    kernels, which keep nothing s x s — rather than traced again; the loss's tensors scale with the tokens there
    too."""
    fixed = timeline.fixed_parts(config, analytic.predict(config, device_type)["memory_allocated"], device_type)
    tokens = config.workload.batch_size * config.workload.seq_len

    def need(cfg: BenchConfig) -> int | None:
        act = analytic.activations(cfg, None, device_type)
        if act["activations_bytes"] is None and traced is not None and traced["activations_bytes"] is not None:
            t = cfg.workload.batch_size * cfg.workload.seq_len
            act = {"activations_bytes": traced["activations_bytes"] * t // tokens}
            if traced.get("forward_peak_bytes") is not None:  # its excess (cast weights, mostly) held as traced
                excess = traced["forward_peak_bytes"] - traced["activations_bytes"]
                act["forward_peak_bytes"] = act["activations_bytes"] + excess
        return timeline.step_moments(cfg, fixed, act)["peak_step_bytes"]

    return need


def largest(
    cfg: BenchConfig, key: str, budget_bytes: int, limit: int, need: Callable[[BenchConfig], int | None]
) -> dict:
    """The largest value of `key` whose predicted peak (`need`) fits `budget_bytes`: doubling, then bisecting (the
    peak grows with both batch and sequence length)."""
    at = {}

    def fits(value: int) -> bool | None:
        if value not in at:
            at[value] = need(with_value(cfg, key, value))
        return None if at[value] is None else at[value] <= budget_bytes

    first = fits(1)
    if first is None:
        return {"value": None, "reason": "no activation figure for this configuration"}
    if not first:
        return {"value": 0, "predicted_bytes_at_1": at[1]}
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return {"value": lo, "predicted_bytes": at[lo], "limit": limit}


def seq_limit(cfg: BenchConfig) -> int:
    """The longest sequence worth searching: the model's context (its family says), else MAX_VALUE."""
    return min(MAX_VALUE, families.of(cfg.model).context_length(cfg.model) or MAX_VALUE)


# What "fits?" says: the whole error band fits, only part of it, or none of it.
FITS, BORDERLINE, NO = "fits", "borderline", "no"
NO_BAND = {"low": 1.0, "high": 1.0, "source": "no error band: the prediction alone"}


def verdict(peak: int, band: dict, overhead: tuple, budget: int) -> str:
    """`fits` where the band's upper end (the peak x the highest measured / predicted, + the device's highest
    overhead) fits the card, `no` where even its lower end does not, `borderline` in between."""
    low, high = peak * band["low"] + overhead[0], peak * band["high"] + overhead[1]
    return FITS if high <= budget else NO if low > budget else BORDERLINE


def cards(cfg: BenchConfig, predicted: dict, overheads: dict, card_list=CARDS_GB, band: dict = NO_BAND) -> list[dict]:
    """For each card (GiB): the device-level range (the step's peak across the measured error `band`, + what the
    device adds, low to high), whether it fits (verdict), and the largest batch size and sequence length whose
    high end would fit; where the peak has no figure, the reason. `predicted` is step()'s answer."""
    peak = predicted["peak_step_bytes"]
    need = peak_function(cfg, traced=predicted if predicted["activations_source"] == "traced" else None)
    limit = seq_limit(cfg)
    reason = None if peak is not None else f"no activation figure: {predicted['formulas']['activations_bytes']}"
    rows = []
    for gb in card_list:
        low, high, source = overheads[gb]
        budget = int(gb * GIB)
        room = int((budget - high) / band["high"])  # what the prediction may reach for the high end to fit
        row = {"card_gib": gb, "overhead_source": source, "band": band, "no_figure_reason": reason}
        if peak is None:
            row.update(device_low_bytes=None, device_high_bytes=None, fits="unknown")
        else:
            row.update(
                device_low_bytes=int(peak * band["low"]) + low,
                device_high_bytes=int(peak * band["high"]) + high,
                fits=verdict(peak, band, (low, high), budget),
            )
        row["largest_batch_size"] = largest(cfg, "workload.batch_size", room, MAX_VALUE, need)["value"]
        row["largest_seq_len"] = largest(cfg, "workload.seq_len", room, limit, need)["value"]
        rows.append(row)
    return rows
