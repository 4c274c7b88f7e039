"""The judges of claims measured on hardware: each reads the grouped frame by its structured columns and the
figures of its `judge:` entry in suites/claims.yaml, and returns a Verdict. pandas and numpy only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.families import llama
from harness.predict import analytic
from harness.report.frame import quiet_fragmentation
from harness.report.selection import (
    PAIRED_WITHIN,
    TELLS_APART,
    attention_cells,
    checkpointing_pairs,
    checkpointing_rows,
    depth_families,
    hardware_of,
    keyed,
    measured_rows,
    rows_in,
    same_configuration_but,
    select,
    told_apart,
)
from harness.report.verdict import Verdict
from harness.units import GIB, MIB


def judge_range(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    base = select(measured_rows(groups), j.get("where"))
    parts = [select(base, subset["where"]) for subset in j["subsets"]]
    results, measured = [], []
    for subset, part in zip(j["subsets"], parts):
        rows = part[f"{j['metric']}_median"].dropna()
        if rows.empty:
            results.append((subset["label"], None))
            continue
        med = float(rows.median())
        results.append((subset["label"], j["lo"] <= med <= j["hi"]))
        measured.append(
            f"{subset['label']}: median {med:.2f} over {len(rows)} configuration(s) "
            f"(range {rows.min():.2f}–{rows.max():.2f})"
        )
    predicted = ""
    if "flop_ratio_where" in j:
        parts.append(select(base, j["flop_ratio_where"]))
        flops = parts[-1]["predicted_flop_ratio_median"].dropna()
        if len(flops):
            predicted = f"FLOP ratio {flops.min():.2f}–{flops.max():.2f} (3 − 1/depth for the mlp, 3 for llama)"
    read = rows_in(groups, parts)
    read = read[read[f"{j['metric']}_median"].notna() | read["predicted_flop_ratio_median"].notna()]
    return Verdict.of(results, "; ".join(measured) or "—", predicted, hardware_of(base), read)


def judge_pair_ratio(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Per configuration measured with both methods (same hardware, torch build, environment): the metric's
    ratio, numerator method over denominator method, one part per configuration."""
    j = claim["judge"]
    ok = select(measured_rows(groups), j.get("where"))
    key = [*PAIRED_WITHIN, "hash_without_method", "config", "checkpointing"]
    num = ok[ok["method"] == j["numerator"]].set_index(key)
    den = ok[ok["method"] == j["denominator"]].set_index(key)
    with quiet_fragmentation():
        pairs = num.join(den, suffixes=("_num", "_den"), how="inner").sort_index().copy()
        hardware = hardware_of(pairs.reset_index().rename(columns={"hardware_label_num": "hardware_label"}))
    read = ok[ok["method"].isin([j["numerator"], j["denominator"]]) & keyed(ok, key, set(pairs.index))]
    if pairs.empty:
        return Verdict.not_measured(rows=read)
    col = f"{j['metric']}_median"
    ratios = pairs[f"{col}_num"] / pairs[f"{col}_den"]
    pred = pairs[f"predicted_{col}_num"] / pairs[f"predicted_{col}_den"]
    rows = [{c: p.get(f"{c}_num", p.get(c)) for c in TELLS_APART} for p in pairs.reset_index().to_dict("records")]
    labels = told_apart([cfg + (" ckpt" if ck else "") for (*_, cfg, ck) in pairs.index], rows)
    parts = [
        (f"{label} ({r:.2f}×)", None if pd.isna(r) else j["lo"] <= r <= j["hi"]) for label, r in zip(labels, ratios)
    ]
    measured = ratios.dropna()
    held = int(((measured >= j["lo"]) & (measured <= j["hi"])).sum())
    text = (
        f"{j['numerator']} / {j['denominator']} {j['metric']}: median {measured.median():.2f}× over "
        f"{len(measured)} configuration(s) (range {measured.min():.2f}–{measured.max():.2f}×), {held} of them in "
        f"[{j['lo']:g}, {j['hi']:g}]"
    )
    return Verdict.of(parts, text, _predicted_ratio(pred, ratios, j["metric"]), hardware, read, "configurations")


def _predicted_ratio(pred: pd.Series, measured: pd.Series, metric: str) -> str:
    """The analytic model's ratios, once: their range and in how many configurations the measurement agrees with
    them within the model's stated tolerance for the metric (harness/predict/analytic.py TOLERANCE)."""
    both = pd.concat([pred, measured], axis=1, keys=["pred", "measured"]).dropna()
    if both.empty:
        return ""
    text = f"analytic: {both['pred'].min():.2f}–{both['pred'].max():.2f}×"
    tolerance = analytic.TOLERANCE.get(metric)
    if tolerance is None:
        return text
    agree = int(((both["measured"] / both["pred"] - 1).abs() <= tolerance).sum())
    return f"{text}; the measured ratio is within {tolerance:.0%} of it in {agree} of {len(both)} configuration(s)"


def judge_checkpointing(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Per configuration measured with checkpointing off and on (each side its repeats merged): the activations
    and the step's whole peak saved, against the step time added; two parts per configuration."""
    j = claim["judge"]
    pairs = checkpointing_pairs(groups)
    if not pairs.empty:
        pairs = pairs[pairs["depth_off"].fillna(0) >= j["min_depth"]]
    if pairs.empty:
        return Verdict.not_measured(rows=groups.iloc[0:0])
    rows = [{c: p.get(f"{c}_on", p.get(c)) for c in TELLS_APART} for p in pairs.to_dict("records")]
    names = told_apart([f"depth {int(p['depth_off'])} {p['method']}" for _, p in pairs.iterrows()], rows)
    results, measured, predicted = [], [], []
    for name, (_, p) in zip(names, pairs.iterrows()):
        in_time = bool(j["added_lo_pct"] <= p["time_added_pct"] <= j["added_hi_pct"])
        # "memory" in the seed: judged for the activations checkpointing targets and for the step's whole peak
        results.append(
            (f"{name}: activation memory", in_time and p["activations_saved_pct"] >= j["saved_at_least_pct"])
        )
        results.append((f"{name}: peak step memory", in_time and p["peak_saved_pct"] >= j["saved_at_least_pct"]))
        # the spread: the step time added between the runs' extremes (slowest off against fastest on, and back)
        lo = (p["step_s_min_on"] / p["step_s_max_off"] - 1) * 100
        hi = (p["step_s_max_on"] / p["step_s_min_off"] - 1) * 100
        measured.append(
            f"{name} ({int(p['n_off'])} run(s) off, {int(p['n_on'])} on): activations "
            f"−{p['activations_saved_pct']:.0f}%, peak −{p['peak_saved_pct']:.0f}%, step time "
            f"+{p['time_added_pct']:.0f}% (runs' extremes {lo:+.0f}% to {hi:+.0f}%)"
        )
        on, off = p["predicted_activations_bytes_median_on"], p["predicted_activations_bytes_median_off"]
        if on and off:
            # one more forward against forward + backward ≈ three forwards
            predicted.append(
                f"{name}: activations −{(1 - on / off) * 100:.0f}%, +1 forward ≈ +{100 / 3:.0f}% of fwd+bwd"
            )
    return Verdict.of(
        results,
        "; ".join(measured),
        "; ".join(predicted),
        hardware_of(pairs.rename(columns={"hardware_label_off": "hardware_label"})),
        checkpointing_rows(groups, pairs),
        "parts",
    )


def judge_linear_in_depth(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Per configuration measured at `min_depths` depths or more (mlp, checkpointing off): a straight line
    through activation bytes against depth, judged by its R²."""
    j = claim["judge"]
    families = []
    for g in depth_families(groups, j["min_depths"]):
        first = g.iloc[0]  # its label with the depth left open names the family
        families.append((first["hardware"], first["config"].replace(f"mlp:{int(first['depth'])}x", "mlp:Nx", 1), g))
    families.sort(key=lambda f: f[:2])
    names = told_apart([name for _, name, _ in families], [g.iloc[0].to_dict() for _, _, g in families])
    verdicts, measured, predicted = [], [], []
    for name, (_, _, g) in zip(names, families):
        x, y = g["depth"].astype(float).to_numpy(), g["activations_bytes_median"].to_numpy()
        slope, intercept = np.polyfit(x, y, 1)
        r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        verdicts.append((name, bool(r2 >= j["r2_at_least"])))
        deepest = g.loc[g["depth"].idxmax()]
        measured.append(
            f"{name}, depths {', '.join(str(int(d)) for d in sorted(set(x)))}: {slope / 1024:.1f} KiB per "
            f"layer + {intercept / 1024:.1f} KiB, R² = {r2:.6f}; depth {int(deepest['depth'])} holds "
            f"{deepest['activations_bytes_median'] / slope:.1f}× one layer's activations"
        )
        pred = g["predicted_activations_bytes_median"].dropna()
        if len(pred) == len(g):
            err = (g["activations_bytes_median"] / g["predicted_activations_bytes_median"] - 1).abs().max()
            predicted.append(f"{name}: analytic formula, largest deviation {err:.2%}")
    read = rows_in(groups, [g for _, _, g in families])
    if not verdicts:
        return Verdict.not_measured(rows=read)
    judged = pd.concat([g for _, _, g in families])  # the hardware of the families judged, not of every mlp row
    return Verdict.of(verdicts, "; ".join(measured), "; ".join(predicted), hardware_of(judged), read, "configurations")


def _family_name(preset, precision, method, batch_size, checkpointing) -> str:
    return f"{preset} {precision} {method} bs{batch_size}" + (" ckpt" if checkpointing else "")


def judge_attention(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Within one family (same preset, precision, method, batch, checkpointing) measured with both eager and
    SDPA at `min_lengths` lengths or more: SDPA's activations should grow about linearly in s, and eager's excess
    over SDPA (the s x s matrices) about quadratically: x4 per doubling of s."""
    j = claim["judge"]
    read, both, lengths = attention_cells(groups, j["min_lengths"])
    if lengths.empty:
        return Verdict.not_measured(rows=read)
    # the family with the most lengths; among equals the first by hardware and name
    family = min(lengths.index, key=lambda f: (-lengths[f], f[0], _family_name(*f[1:])))
    hw, preset, _, _, batch_size, _ = family
    name = _family_name(*family[1:])
    g = both.loc[family]
    s_lo, s_hi = g.index.min(), g.index.max()
    doublings = np.log2(s_hi / s_lo)
    eager, sdpa = g[("activations_bytes_median", "eager")], g[("activations_bytes_median", "sdpa")]
    excess = eager - sdpa
    sdpa_growth = (sdpa.loc[s_hi] / sdpa.loc[s_lo]) ** (1 / doublings)
    excess_growth = (excess.loc[s_hi] / excess.loc[s_lo]) ** (1 / doublings) if excess.loc[s_lo] > 0 else float("nan")
    results = [
        (
            f"eager stores s×s per head (excess over SDPA ×≥{j['eager_excess_growth_at_least']:g} per doubling)",
            bool(excess_growth >= j["eager_excess_growth_at_least"]),
        ),
        (f"SDPA does not (×≤{j['sdpa_growth_at_most']:g} per doubling)", bool(sdpa_growth <= j["sdpa_growth_at_most"])),
    ]
    heads = llama.shape(llama.LlamaModelConfig(preset=preset))["num_heads"]
    quadratic = int(batch_size) * heads * s_hi * s_hi * 4  # fp32 softmax probabilities, one layer
    measured = (
        f"{name}, seq {s_lo} → {s_hi}: SDPA activations ×{sdpa_growth:.2f} per doubling; eager's excess "
        f"over SDPA ×{excess_growth:.2f} per doubling, {excess.loc[s_hi] / MIB:.1f} MiB at s = {s_hi} "
        f"(fp32 softmax b·heads·s² per layer = {quadratic / MIB:.1f} MiB)"
    )
    pred_e = g.get(("predicted_activations_bytes_median", "eager"))
    predicted = []
    if pred_e is not None and pred_e.notna().all():
        err = (eager / pred_e - 1).abs().max()
        predicted.append(f"eager and SDPA per-layer formulas (analytic): largest deviation {err:.2%}")
    seed = j["seed_example"]
    one = seed["layers"] * seed["seq_len"] ** 2 * 4  # fp32
    predicted.append(
        f"the seed's example: {seed['layers']} layers × {seed['seq_len']}² fp32 = {one / GIB:.3f} GiB per "
        f"head and sequence; × {seed['heads']} heads (Llama 3.1 8B) = {seed['heads'] * one / GIB:.0f} GiB "
        f"in eager attention"
    )
    return Verdict.of(results, measured, "; ".join(predicted), hardware_of(read[read["hardware"] == hw]), read)


def judge_precision(claim: dict, groups: pd.DataFrame) -> Verdict:
    """Per configuration measured in the reference precision and in others (full AdamW, checkpointing off): the
    other precision's training peak against the reference's."""
    j = claim["judge"]
    ok = select(measured_rows(groups), j["where"])
    families = []
    for g in same_configuration_but(ok, "precision"):
        first = g.iloc[0]  # its label without the precision names the family
        families.append((first["hardware"], first["config"].replace(f" {first['precision']} ", " ", 1), g))
    judged, compared, found = [], [], []  # found: (base label, the other precision's row, its ratios)
    for _, base, g in sorted(families, key=lambda f: f[:2]):
        ref = g[g["precision"] == j["reference"]]
        if ref.empty:
            continue
        judged.append(g)
        compared += [g] if (g["precision"] != j["reference"]).any() else []
        ref_peak, ref_act = ref["peak_step_bytes_median"].iloc[0], ref["activations_bytes_median"].iloc[0]
        for _, row in g[g["precision"] != j["reference"]].iterrows():
            found.append(
                (base, row, row["peak_step_bytes_median"] / ref_peak, row["activations_bytes_median"] / ref_act)
            )
    read = rows_in(groups, compared)  # the families with the reference and another precision
    if not found:
        return Verdict.not_measured(rows=read)
    labels = told_apart(
        [f"{row['precision']} on {base}" for base, row, *_ in found], [row.to_dict() for _, row, *_ in found]
    )
    results = [(label, bool(peak < j["peak_ratio_below"])) for label, (_, _, peak, _) in zip(labels, found)]
    measured = [
        f"{label}: peak = {peak:.2f}× {j['reference']} (activations {act:.2f}×)"
        for label, (_, _, peak, act) in zip(labels, found)
    ]
    return Verdict.of(
        results,
        "; ".join(measured),
        "bf16: weights, grads, states and activations halve; autocast keeps fp32 weights, grads and "
        "states (16 B/param) and halves only matmul activations",
        hardware_of(pd.concat(judged)),  # the families judged, not every full AdamW row
        read,
        "configurations",
    )


def judge_finite_differences(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    rows = measured_rows(groups)
    rows = rows[rows["fd_max_rel_error_median"].notna()]
    if rows.empty:
        return Verdict.not_measured(rows=rows)
    worst = rows["fd_max_rel_error_max"].max()
    worst_config = rows.loc[rows["fd_max_rel_error_max"].idxmax(), "config"]
    cost = rows["fd_full_gradient_projected_s_median"] / rows["backprop_fwd_bwd_float64_s_median"]
    big = rows.loc[rows["fd_full_gradient_forward_passes_median"].idxmax()]
    results = [
        ("autograd agrees with central differences", bool(worst <= j["rtol"])),
        ("finite differences cost orders of magnitude more than backprop", bool(cost.min() >= j["cost_at_least"])),
    ]
    return Verdict.of(
        results,
        f"{len(rows)} configuration(s): autograd vs central differences (float64, 16 entries each) "
        f"max relative error {worst:.1e} ({worst_config}; judged at rtol {j['rtol']:.0e}, records flag "
        f"above {j['records_flag_above']:.0e}); a full FD gradient of "
        f"{big['config']} needs {int(big['fd_full_gradient_forward_passes_median']):,} forwards, "
        f"projected {big['fd_full_gradient_projected_s_median']:.0f} s against "
        f"{big['backprop_fwd_bwd_float64_s_median'] * 1e3:.0f} ms for one forward+backward; "
        f"FD/backprop {cost.min():,.0f}×–{cost.max():,.0f}×",
        "2 forwards per parameter (central differences) against ~3 forwards' cost for backprop",
        hardware_of(rows),
        rows,
    )


def judge_gradient_norms(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    ratio = "first_to_last_layer_grad_norm_ratio_median"
    rows = measured_rows(groups)
    rows = rows[rows[ratio].notna()]
    if rows.empty:
        return Verdict.not_measured(rows=rows)
    plain = rows[~rows["residual"].astype(bool) & ~rows["norm"].astype(bool)]
    stable = rows[rows["residual"].astype(bool) & rows["norm"].astype(bool)]
    deep_plain = plain[plain["depth"] >= j["deep_from_depth"]]
    lo, hi = j["stable_within"]
    results = [
        (
            "gradients vanish with depth in plain stacks",
            bool((deep_plain[ratio] < j["vanished_below"]).any()) if len(deep_plain) else None,
        ),
        (
            f"residual + LayerNorm keep them within {hi:g}× at every depth",
            bool(((stable[ratio] > lo) & (stable[ratio] < hi)).all()) if len(stable) else None,
        ),
    ]
    lines = [
        f"{r['config']}: first/last layer gradient norm {r[ratio]:.1e}"
        for _, r in rows.sort_values(["activation", "residual", "depth"]).iterrows()
    ]
    return Verdict.of(
        results,
        "; ".join(lines),
        "sigmoid: each layer scales gradients by ≤ 0.25 × |W| — geometric decay with depth",
        hardware_of(rows),
        rows,
    )


def judge_not_measured(claim: dict, groups: pd.DataFrame) -> Verdict:
    return Verdict.not_measured(claim["judge"]["reason"])
