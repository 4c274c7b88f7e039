"""`bench claims`: a verdict for every claim of the seed documents, from the results folder and the analytic model.

The registry is data (suites/claims.yaml); each entry's `judge:` names a judge here (`kind`) and holds every
figure the judge compares against. A judge reads the grouped table of the folder (harness.report.frame) by its
structured columns and returns a `Verdict`: the verdict, the measured figures, the predicted ones and the hardware.
A claim nothing in the folder measures is "not measured on this hardware", with the suite that would.

pandas, numpy and yaml only: claims are judged where torch is not installed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import yaml

from harness import repo_root
from harness.records.record import Record
from harness.report.escape import md_text
from harness.report.frame import grouped, records_frame
from harness.report.judges import (
    judge_attention,
    judge_checkpointing,
    judge_finite_differences,
    judge_gradient_norms,
    judge_linear_in_depth,
    judge_not_measured,
    judge_pair_ratio,
    judge_precision,
    judge_range,
)
from harness.report.judges_model import judge_adam_7b, judge_llama8b_lora, judge_lora_405b
from harness.report.judges_scale import judge_sharding
from harness.report.selection import checkpointing_pairs  # noqa: F401  (plots pair rows the same way)
from harness.report.verdict import (  # noqa: F401
    CONDITIONAL,
    FAILS,
    HOLDS,
    NO_GPU_VERDICT,
    NOT_MEASURED,
    Verdict,
    no_gpu_verdict,
)


def load_registry(path: Path | None = None) -> list[dict]:
    path = path or repo_root() / "suites" / "claims.yaml"
    return yaml.safe_load(path.read_text())


JUDGES = {
    "range": judge_range,
    "pair_ratio": judge_pair_ratio,
    "checkpointing": judge_checkpointing,
    "linear_in_depth": judge_linear_in_depth,
    "attention": judge_attention,
    "adam_7b": judge_adam_7b,
    "lora_405b": judge_lora_405b,
    "llama8b_lora": judge_llama8b_lora,
    "precision": judge_precision,
    "finite_differences": judge_finite_differences,
    "gradient_norms": judge_gradient_norms,
    "sharding": judge_sharding,
    "not_measured": judge_not_measured,
}


def judge(claim: dict, groups: pd.DataFrame) -> Verdict:
    """The claim's judge on the grouped frame, with the device types of the rows it read and, for a claim about
    GPUs, what about them (`gpu_subject` in suites/claims.yaml): a verdict judged on CPUs alone says so."""
    verdict = JUDGES[claim["judge"]["kind"]](claim, groups)
    rows = verdict.rows
    devices = tuple(sorted(set(rows["device_type"].dropna()))) if rows is not None and len(rows) else ()
    return dataclasses.replace(verdict, devices=devices, subject=claim.get("gpu_subject") or "")


# The metric columns each judge kind reads: a record's figures left out by the noise gate count against a verdict
# where they are among these (a noisy step time is not left out of a memory claim).
READS = {
    "checkpointing": ("activations_bytes", "peak_step_bytes", "step_s"),
    "linear_in_depth": ("activations_bytes",),
    "attention": ("activations_bytes",),
    "adam_7b": ("optimizer_bytes",),
    "llama8b_lora": ("peak_infer_bytes", "peak_step_bytes"),
    "precision": ("peak_step_bytes", "activations_bytes"),
    "finite_differences": ("fd_max_rel_error", "fd_full_gradient_projected_s", "backprop_fwd_bwd_float64_s"),
    "gradient_norms": ("first_to_last_layer_grad_norm_ratio",),
    "sharding": ("params_bytes", "grads_bytes", "optimizer_bytes", "peak_step_bytes", "step_s"),
}


def reads(claim: dict) -> tuple[str, ...]:
    """The figures a claim's judge reads, in the order its page shows them: what the noise gate's count and the
    claim page's columns both go by."""
    j = claim["judge"]
    return READS.get(j["kind"]) or ((j["metric"],) if "metric" in j else ())


def verdicts(
    records: list[Record], root: Path, include_noisy: bool = False, registry: list[dict] | None = None
) -> list[tuple[dict, Verdict]]:
    """Every claim judged on the folder's records through the noise gate (harness/report/frame.py), each verdict
    counting the records it left figures of out: those the same judge reads with nothing left out whose gated
    figures are among the ones it reads."""
    frame = records_frame(records, root, include_noisy)
    groups = grouped(frame) if not frame.empty else empty_groups()
    gated = frame[frame["left_out"] != ""] if not frame.empty else frame
    ungated = grouped(records_frame(records, root, include_noisy=True)) if len(gated) else None
    out = []
    for claim in registry or load_registry():
        verdict = judge(claim, groups)
        if ungated is not None:
            read = judge(claim, ungated).rows
            ids = set(" ".join(read["ids"]).split()) if read is not None and len(read) else set()
            hit = gated[
                gated["id"].isin(ids)
                & gated["left_out_figures"].map(lambda f: bool(set(reads(claim)) & set(f.split())))
            ]
            verdict = dataclasses.replace(verdict, left_out=len(hit))
        out.append((claim, verdict))
    return out


# --- the report ----------------------------------------------------------------------------------------------


def commands(claim: dict) -> str:
    suites = claim.get("suite") or []
    if not suites:
        return "bench claims (analytic: harness/predict/analytic.py)"
    return " · ".join(f"make bench SUITE={s}" for s in suites) + " ; make submit RUN=… ; make report"


def evaluate(groups: pd.DataFrame, registry: list[dict] | None = None) -> list[dict]:
    """Every claim judged on a grouped frame, as the report's rows (no record left out is counted: `report` of
    `verdicts` counts them)."""
    return report([(claim, judge(claim, groups)) for claim in registry or load_registry()])


def report(judged: list[tuple[dict, Verdict]]) -> list[dict]:
    return [
        {
            "id": claim["id"],
            "seed": claim["seed"],
            "statement": claim["statement"],
            "quantity": claim["quantity"],
            "condition": claim["condition"],
            "references": claim["references"],
            "command": commands(claim),
            **verdict.fields(),
            "gpu_measured": not no_gpu_verdict([verdict]),
        }
        for claim, verdict in judged
    ]


def empty_groups() -> pd.DataFrame:
    """The grouped table of an empty folder."""
    return grouped(pd.DataFrame())


def markdown(results: list[dict], plots: list[str]) -> str:
    lines = [
        "# Claims of the seed documents, measured",
        "",
        "Generated by `bench claims` from the results folder and the analytic model (`harness/predict/analytic.py`); "
        "registry: `suites/claims.yaml`. Timings of noisy phases and of contended runs are left out of every verdict "
        "(results/README.md, “The noise gate”; `bench claims --include-noisy` keeps them); “left out” counts the "
        "records a verdict lost figures of.",
        "",
        *([f"**{NO_GPU_VERDICT}**", ""] if not any(r["gpu_measured"] for r in results) else []),
        "| # | claim (seed's words) | verdict | measured | predicted | hardware | left out | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            str(r["id"]),
            f"“{r['statement']}” ({r['seed']}) — judged: {r['condition']}",
            f"**{md_text(r['verdict'])}**",
            md_text(r["measured"]),
            md_text(r["predicted"] or "—"),
            md_text(r["hardware"]),
            str(r["left_out"]),
            f"`{r['command']}`",
        ]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    lines += ["", "References per claim: `suites/claims.yaml` (`references`), harness/REFERENCES.md."]
    return "\n".join(lines) + "\n"


def as_json(results: list[dict]) -> str:
    return json.dumps(results, indent=2, sort_keys=True, default=str) + "\n"
