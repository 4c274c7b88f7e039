"""The judges of claims the analytic model answers (figures for models too large to measure here), each beside
whatever measurement the folder holds."""

from __future__ import annotations

import dataclasses

import pandas as pd

from harness.config.groups import BenchConfig
from harness.predict import analytic, estimate
from harness.report.selection import hardware_of, measured_rows, within
from harness.report.verdict import Verdict
from harness.units import GB


def _config(preset: str, method: str = "full_adamw", precision: str = "bf16", **extra) -> BenchConfig:
    """A configuration for the analytic model (SDPA, checkpointing off)."""
    return BenchConfig.from_dict(
        {
            "model": {"name": "llama", "preset": preset, "attn_implementation": "sdpa"},
            "method": {
                "name": method,
                "r": extra.get("r"),
                "target_modules": extra.get("targets"),
                "min_8bit_size": 4096,
            },
            "precision": {"name": precision},
            "checkpointing": {"enabled": False, "segments": None},
            "workload": {"batch_size": extra.get("batch", 1), "seq_len": extra.get("seq", 512)},
        }
    )


def judge_adam_7b(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    fp16 = analytic.memory(_config(j["preset"], precision="bf16"))
    fp32 = analytic.memory(_config(j["preset"], precision="fp32"))
    n = fp32["total_params"]
    figures = {"params_16bit": fp16["params_bytes"] / GB, "adam_states_fp32": fp32["optimizer_bytes"] / GB}
    full = measured_rows(groups)
    full = full[(full["method"] == "full_adamw") & (full["precision"] == "fp32")]
    read = full[full["optimizer_bytes_median"].notna() & full["predicted_optimizer_bytes_median"].notna()]
    per_param = (full["optimizer_bytes_median"] / full["predicted_optimizer_bytes_median"]).dropna()
    results = [(f["label"], abs(figures[f["quantity"]] / f["gb"] - 1) <= j["tolerance"]) for f in j["figures"]]
    measured = (
        f"AdamW state measured = analytic 8 B/param + 4 B/tensor in {len(per_param)} fp32 configuration(s) "
        f"(measured/predicted {per_param.min():.4f}–{per_param.max():.4f})"
        if len(per_param)
        else "—"
    )
    params_gb, states_gb = figures["params_16bit"], figures["adam_states_fp32"]
    total = (fp32["params_bytes"] + fp32["grads_bytes"] + fp32["optimizer_bytes"]) / GB
    return Verdict.of(
        results,
        measured,
        f"Llama 2 7B: {n / 1e9:.2f}B parameters; 16-bit weights {params_gb:.1f} GB; two fp32 Adam "
        f"states {states_gb:.1f} GB (8 B/param) — 28 GB would be one fp32 state or two 16-bit ones; "
        f"fp32 weights + grads + states {total:.0f} GB",
        hardware_of(full) if len(per_param) else "analytic",
        read,
    )


def judge_lora_405b(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    counts = {
        s["label"]: analytic.lora_parameter_count(_config(j["preset"], "lora", r=j["r"], targets=s["targets"]))
        for s in j["target_sets"]
    }
    results = [(f"{label}: {c / 1e9:.2f}B", j["lo_params"] <= c <= j["hi_params"]) for label, c in counts.items()]
    adapters = measured_rows(groups)
    adapters = adapters[adapters["method"].isin(["lora", "qlora"])]
    return Verdict.of(
        results,
        "LoRA parameter counts r·(d_in+d_out) are pinned by tests against peft on small models",
        "; ".join(f"{label}: {c / 1e9:.3f}B" for label, c in counts.items()),
        "analytic" if adapters.empty else "analytic (formula checked on " + hardware_of(adapters) + ")",
    )


def own_card_overrides(j: dict) -> list[str]:
    """The seed's setup of claim 3 as `bench estimate` / `bench fit` overrides (the judge entry's figures)."""
    return [
        "model=llama",
        f"model.preset={j['preset']}",
        "method=lora",
        f"method.r={j['r']}",
        f"precision={j['precision']}",
        f"workload.batch_size={j['batch_size']}",
        f"workload.seq_len={j['seq_len']}",
    ]


def own_card_commands(j: dict) -> tuple[str, ...]:
    """What a reader runs for their own card: the estimate (no GPU needed), then the measured answer on the card,
    and on a larger card the same question for a 24 GB one."""
    setup = " ".join(own_card_overrides(j))
    fit = f".venv/bin/bench fit device=cuda {setup} fit.search=workload.seq_len"
    return (
        f".venv/bin/bench estimate {setup} --card 24",
        fit,
        f"{fit} device.memory_budget_gib=24",
    )


def judge_llama8b_lora(claim: dict, groups: pd.DataFrame) -> Verdict:
    j = claim["judge"]
    cfg = _config(j["preset"], "lora", j["precision"], r=j["r"], batch=j["batch_size"], seq=j["seq_len"])
    pred, est = analytic.memory(cfg), estimate.step(cfg, "cuda")  # the figures `bench estimate` prints
    infer_est, train_est = est["peak_infer_bytes"], est["peak_step_bytes"]
    infer_text, train_text = _gb(infer_est, "not derived"), _gb(train_est, "not derived")
    predicted = (
        f"bench estimate: inference {infer_text}, training step {train_text} (bytes the CUDA allocator holds, the "
        f"CUDA context not included); bf16 weights {pred['params_bytes'] / GB:.1f} GB, LoRA grads + AdamW state "
        f"{(pred['grads_bytes'] + pred['optimizer_bytes']) / GB:.2f} GB, activations at seq {j['seq_len']} "
        f"{_gb(est['activations_bytes'], 'not derived')}"
    )
    # the seed's setup: bf16 weights, LoRA of rank r, batch 1 — a checkpointing-on run answers another question
    rows = measured_rows(groups)
    rows = rows[
        (rows["preset"] == j["preset"])
        & (rows["method"] == "lora")
        & (rows["batch_size"] == j["batch_size"])
        & (rows["precision"] == j["precision"])
        & (rows["lora_r"] == j["r"])
        & ~rows["checkpointing"].astype(bool)
    ]
    oom = groups[(groups["preset"] == j["preset"]) & (groups["n_oom"] > 0)]
    if rows.empty:  # what it read: the runs that did not fit
        verdict = Verdict.not_measured(
            f"out of memory on {hardware_of(oom)}" if len(oom) else "—", predicted, hardware_of(oom), oom
        )
        infer = train = None
    else:
        infer, train = rows["peak_infer_bytes_median"].median(), rows["peak_step_bytes_median"].median()
        results = [
            (j["inference"]["label"], within(infer / GB, j["inference"]["gb"])),
            (j["training"]["label"], within(train / GB, j["training"]["gb"])),
        ]
        measured = f"inference {infer / GB:.1f} GB, training {train / GB:.1f} GB"
        verdict = Verdict.of(results, measured, predicted, hardware_of(rows), rows)
    beside = (
        (f"inference peak (the seed: {j['inference']['label']})", _gb(infer), infer_text),
        (f"training step peak (the seed: {j['training']['label']})", _gb(train), train_text),
    )
    return dataclasses.replace(verdict, beside=beside, commands=own_card_commands(j))


def _gb(value: float | None, missing: str = "not measured") -> str:
    return missing if value is None or pd.isna(value) else f"{value / GB:.1f} GB"
