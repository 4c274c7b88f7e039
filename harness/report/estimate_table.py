"""`bench estimate`'s answer, for people (a table) and for programs (JSON): the prediction, what the device adds,
each card's verdict, and beside them how far such predictions were from measurement. `answer` is
{config: the BenchConfig asked about, assumed (what the user did not set, in words), predicted, calibration, band
(the error band the verdicts use), cards} (harness/cli_estimate.py). No torch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from harness.config.rules import ADAPTER_METHODS
from harness.predict.estimate import GRADIENTS_HELD, PEAK_HOLDS
from harness.units import GIB

if TYPE_CHECKING:
    from harness.config.groups import BenchConfig


def gib(value) -> str:
    return f"{value / GIB:.2f}" if isinstance(value, (int, float)) else "-"


def describe(cfg: BenchConfig, predicted: dict) -> str:
    model, method, work = cfg.model, cfg.method, cfg.workload
    name = getattr(model, "preset", None) or getattr(model, "config", None) or model.name
    adapters = f" r={method.r}" if method.name in ADAPTER_METHODS else ""
    params = predicted["params"]
    return (
        f"{model.name}:{name}, {method.label()}{adapters}, {cfg.precision.name}, checkpointing "
        f"{'on' if cfg.checkpointing.enabled else 'off'}, batch {work.batch_size} x {work.seq_len} "
        f"tokens; {params['total'] / 1e9:.3g} B parameters, {params['trainable'] / 1e6:.4g} M trainable"
    )


def _ratio(pair) -> str:
    return f"{pair[0]:.2f}-{pair[1]:.2f}" if pair else "-"


def calibration_lines(calibration: dict, band: dict) -> list[str]:
    head = (
        f"how far such predictions ({calibration['like']}) were from measurement in the results folder "
        "(measured / predicted):"
    )
    lines = [head]
    if not calibration["rows"]:
        lines.append(f"  {calibration['note']}")
    for row in calibration["rows"]:
        r = row["measured_over_predicted"]
        lines.append(
            f"  {row['hardware']}: n={row['n']}, activations {_ratio(r['activations_bytes'])}, "
            f"step peak {_ratio(r['peak_step_bytes'])}"
        )
    lines.append(f"error band {band['low']:.2f}-{band['high']:.2f} x the peak, from: {band['source']}")
    return lines


def _paged_note(p: dict) -> str:
    if "optimizer_paged_bytes" not in p:
        return ""
    return (
        f"   of which {gib(p['optimizer_paged_bytes'])} paged: CUDA unified memory outside PyTorch's allocator, "
        "counted here as on the device (under pressure the driver moves it to host memory: slower steps)"
    )


def step_lines(p: dict) -> list[str]:
    """The training step: its categories, then the live set at each moment and the largest, named."""
    lines = [
        f"{'training step':<34}{'GiB':>8}",
        f"{'  parameters':<34}{gib(p['params_bytes']):>8}",
        f"{'  gradients':<34}{gib(p['grads_bytes']):>8}   {GRADIENTS_HELD}",
        f"{'  optimizer state':<34}{gib(p['optimizer_bytes']):>8}{_paged_note(p)}",
        f"{'  activations':<34}{gib(p['activations_bytes']):>8}   {p['formulas']['activations_bytes']}",
        "live set at each moment of the step (harness/predict/timeline.py):",
    ]
    lines += [f"{'  ' + name:<34}{gib(value):>8}" for name, value in p["moments"].items() if value is not None]
    if p["peak_step_bytes"] is None:
        lines.append(f"{'  peak':<34}{'-':>8}   no activation figure: {p['formulas']['activations_bytes']}")
    else:
        lines.append(f"{'  peak':<34}{gib(p['peak_step_bytes']):>8}   {PEAK_HOLDS.format(moment=p['peak_moment'])}")
    return lines


def _cell(value, reason: str | None) -> str:
    return str(value) if value is not None else "no figure" if reason else "-"


def card_lines(cards: list[dict]) -> list[str]:
    lines = [
        "per card (GiB of device memory); device level = the step's peak across the error band + CUDA context",
        "(+ allocator reserve where measured or replayed); fits: the band's high end fits, borderline: only its",
        "low end, no: neither; largest batch at this sequence length, largest sequence at this batch size (high",
        "end fits):",
        f"{'card':>6}  {'device level GiB':>17}  {'fits?':<12}{'largest batch':>14}{'largest seq':>13}",
    ]
    sources, reasons = [], []
    for row in cards:
        reason = row["no_figure_reason"]
        level = f"{gib(row['device_low_bytes'])}-{gib(row['device_high_bytes'])}" if not reason else "no figure"
        lines.append(
            f"{row['card_gib']:>6g}  {level:>17}  {row['fits']:<12}"
            f"{_cell(row['largest_batch_size'], reason):>14}{_cell(row['largest_seq_len'], reason):>13}"
        )
        if row["overhead_source"] not in sources:
            sources.append(row["overhead_source"])
        if reason and reason not in reasons:
            reasons.append(reason)
    return [*lines, "", *(f"device level from: {s}" for s in sources), *(f"no figure: {r}" for r in reasons)]


def replay_lines(replay: dict | None) -> list[str]:
    """The reserve replayed (--replay): reserved, and what it holds over the replay's own allocated peak."""
    if replay is None:
        return []
    if replay["reserved_peak_bytes"] is None:
        return [f"{'reserved (replayed)':<34}{'-':>8}   {replay['formula']}"]
    reserved, allocated = replay["reserved_peak_bytes"], replay["allocated_peak_bytes"]
    return [
        f"{'reserved (replayed)':<34}{gib(reserved):>8}   {gib(reserved - allocated)} GiB "
        f"({reserved / allocated - 1:+.1%}) over the replay's allocated peak, {gib(allocated)} GiB: "
        f"{replay['formula']}"
    ]


def table(answer: dict) -> str:
    p = answer["predicted"]
    lines = [f"bench estimate: {describe(answer['config'], p)}"]
    if answer.get("assumed"):
        lines.append(f"assumed: {', '.join(answer['assumed'])}")
    lines += [
        "predicted by the analytic model (harness/predict/analytic.py), storages rounded as the CUDA allocator "
        "holds them",
        "",
        *step_lines(p),
        f"{'inference (forward, no KV cache)':<34}{gib(p['peak_infer_bytes']):>8}   "
        f"{p['formulas']['peak_infer_bytes']}",
        *replay_lines(answer.get("replay")),
        "",
        *calibration_lines(answer["calibration"], answer["band"]),
        "",
        *card_lines(answer["cards"]),
        "measure it: bench fit (same overrides) fit.search=workload.batch_size, on the card or with a budget",
    ]
    return "\n".join(lines)


def as_json(answer: dict) -> str:
    """The answer as data: its config as a record stores it."""
    return json.dumps({**answer, "config": answer["config"].to_dict()}, indent=2, sort_keys=True, default=str)


def _error(value) -> str:
    return f"{value:+.1%}" if isinstance(value, float) else "-"


def _note(row: dict) -> str:
    """Where the row's peak falls, what its activations come from, and what the prediction is: the replayed reserve,
    or the allocated figure with why there is no replay."""
    if row["reason"]:
        return row["reason"]
    note = f"peak at the {row['peak_moment']}" + (f", {row['source']}" if row.get("source") else "")
    if row["reserved_bytes"] is not None:
        return f"{note}; reserve replayed"
    return f"{note}; allocated ({row['replay']['formula']})"


def published_rows(result: dict) -> list[dict]:
    """The published table's rows as text cells: id, quantity, published (its unit), predicted (the same unit), error,
    the allocated figure's error, and the note (the reason where there is no prediction)."""
    out = []
    for row in result["rows"]:
        unit, size = row["unit"], row["unit_bytes"]
        predicted = row["predicted_bytes"]
        out.append(
            {
                "id": row["id"],
                "quantity": row["quantity"],
                "published": f"{row['published']:g} {unit}",
                "predicted": f"{predicted / size:.2f} {unit}" if predicted is not None else "-",
                "error": _error(row["error"]),
                "allocated_error": _error(row.get("allocated_error")),
                "note": _note(row),
            }
        )
    return out


def published_summary(result: dict) -> str:
    if not result["n_expressed"]:
        return "no row can be expressed yet"
    return (
        f"over the {result['n_expressed']} of {len(result['rows'])} rows the estimator can express "
        f"({result['n_replayed']} with the reserve replayed): median |error| {result['median_abs_error']:.1%}, "
        f"largest {result['max_abs_error']:.1%}; the allocated figure alone: median "
        f"{result['allocated_median_abs_error']:.1%}, largest {result['allocated_max_abs_error']:.1%}"
    )


def published_table(result: dict) -> str:
    rows = published_rows(result)
    width = max(len(r["id"]) for r in [{"id": "row"}, *rows]) + 2  # ids are the file's: none may run into the next
    lines = [
        "bench estimate --published: published GPU measurements (harness/predict/published.json) beside the "
        "prediction (the caching allocator's reserve where the run is replayed, else the allocated figure); "
        "error = predicted / published - 1; allocated: the allocated figure's error",
        "",
        f"{'row':<{width}}{'quantity':<19}{'published':>11}{'predicted':>12}{'error':>8}{'allocated':>10}  note",
    ]
    for r in rows:
        lines.append(
            f"{r['id']:<{width}}{r['quantity']:<19}{r['published']:>11}{r['predicted']:>12}{r['error']:>8}"
            f"{r['allocated_error']:>10}  {r['note']}"
        )
    lines += ["", published_summary(result), ""]
    lines += [f"{name}: {text}" for name, text in result["quantities"].items()]
    lines += [f"{name}: {o['bytes']} bytes, from {o['source']}" for name, o in result["overheads"].items()]
    return "\n".join(lines)


def published_json(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=True)
