"""`bench cite ID`: a Markdown snippet an article can paste — the numbers with units and spread, the hardware
and software, the result ID, and the commands that reproduce it. What makes a number weaker (a modified
working tree, a commit the record does not name, software that differs from requirements.lock, failed
self-checks, noisy phases, out of memory) is said at the top, not in a footnote."""

from __future__ import annotations

import shlex
from pathlib import Path

from harness.records.folder import RECORDS, hardware_label
from harness.records.record import Record
from harness.records.schema import CONTENDED_RULE
from harness.records.signing import signing_in_use
from harness.report.escape import fenced, md_code, md_text
from harness.report.frame import config_label
from harness.units import GIB, ci_text, format_bytes


def _ms(t: dict) -> str:
    return f"{t['median_s'] * 1e3:.3g} ms (p10–p90 {t['p10_s'] * 1e3:.3g}–{t['p90_s'] * 1e3:.3g} ms, n = {t['n']})"


def _ratio(value) -> str:
    return f"{value:.2f}×" if isinstance(value, (int, float)) else "not measured"


def _differences(env: dict) -> str:
    return ", ".join(
        f"{d['package']} {d.get('installed') or 'not installed'} (lock {d.get('lock')})"
        for d in env.get("differences") or []
    )


def _number(value, spec: str, scale: float = 1.0) -> str:
    return format(value / scale, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def commit_text(prov: dict) -> str:
    """Which code ran, and on whose word: git's, or BENCH_GIT_SHA's for a copy of the tree without .git."""
    sha = prov.get("git_sha")
    if not sha:
        return "commit not recorded"
    if prov.get("git_sha_source") == "BENCH_GIT_SHA":
        return f"git {sha[:12]} as given by BENCH_GIT_SHA; whether the tree was modified is not known"
    return f"git {sha[:12]}"


def software_warnings(prov: dict) -> list[str]:
    """What a reader must know before trusting that the commit and the lock reproduce the run."""
    out = []
    ignored = prov.get("git_sha_env_ignored")
    if not prov.get("git_sha"):
        out.append(
            "**The record does not name its commit** (`git_sha` is null: git could not name it and no valid "
            f"BENCH_GIT_SHA was given): the exact code that measured this is unknown; it reported "
            f"backprop-bench {md_text(prov.get('harness_version'))}." + (f" {md_text(ignored)}." if ignored else "")
        )
    elif ignored:
        out.append(f"BENCH_GIT_SHA was not used: {md_text(ignored)}.")
    env = prov.get("environment")
    if isinstance(env, dict) and env.get("matches_lock") is False:
        out.append(
            f"**Software not from requirements.lock**: {len(env.get('differences') or [])} pinned package(s) "
            f"differ — {md_text(_differences(env))}. The lock's versions were not the ones measured."
        )
    elif isinstance(env, dict) and env.get("matches_lock") is None:
        out.append(f"Whether the software matched requirements.lock is not known: {md_text(env.get('reason'))}.")
    return out


def warnings(rec: Record) -> list[str]:
    prov = rec.provenance
    out = software_warnings(prov)
    if prov.get("git_dirty"):
        out.append(
            "**Measured from a modified working tree** (`git_dirty`): checking out the commit below does not "
            "reproduce the exact code that ran."
        )
    if rec.checks_failed:
        out.append(
            f"**Self-checks failed**: {md_text(', '.join(rec.checks_failed))} — the harness's own accounting "
            "disagreed with itself; do not cite these figures without reading the record."
        )
    if rec.flags.get("contended") is True:
        out.append(
            f"**Measured while other work ran** (`flags.contended`: {md_text(CONTENDED_RULE)}): its times may be "
            "slower and noisier than the hardware's."
        )
    if rec.noisy:
        out.append(f"Noisy phases (cv above {md_text(rec.config.measure.noisy_cv)}): {md_text(', '.join(rec.noisy))}.")
    if rec.status == "oom":
        out.append(f"**Out of memory**: this configuration does not fit on {md_text(hardware_label(prov))}.")
    return out


def reproduce_commands(rec: Record) -> list[str]:
    prov = rec.provenance
    args = " ".join(shlex.quote(o) for o in rec.overrides)
    sha, lock = prov.get("git_sha"), prov.get("lock_sha256")
    env = prov.get("environment")
    lines = [
        "# in a clone of backprop-bench",
        f"git checkout {sha}"
        if sha
        else f"# the record does not name its commit: use a checkout of backprop-bench {prov.get('harness_version')}",
        f"sha256sum requirements.lock   # {lock}" if lock else "# the record names no requirements.lock (no sha256)",
        f"make bench SUITE= ARGS={shlex.quote(args)}" if args else "make bench SUITE=",
    ]
    if isinstance(env, dict) and env.get("matches_lock") is False:
        lines += [
            f"# the run used other versions than the lock: {_differences(env)}; in such an environment:",
            f"PYTHONPATH=$PWD python -m harness run {args}".rstrip(),
        ]
    return lines


def title(rec: Record) -> str:
    """The configuration, method and checkpointing: how a citation and a record's page name a record."""
    cfg = rec.config
    ckpt = "on" if cfg.checkpointing.enabled else "off"
    return f"{config_label(cfg)}, {cfg.method.label()}, checkpointing {ckpt}"


def _ok_lines(m: dict) -> list[str]:
    t = m["time"]
    lo, hi = m["compute_ratio_ci95"]
    cov = m.get("compute_ratio_ci_coverage")
    ci = ci_text(lo, hi, cov)
    mem, throughput = m.get("memory") or {}, m.get("throughput") or {}
    lines = [
        f"- Compute ratio t(forward+backward) / t(forward): **{m['compute_ratio']:.2f}×** ({ci}); "
        f"backward / forward {_ratio(m.get('backward_to_forward_ratio'))}; "
        f"FLOP ratio {_ratio(m.get('flop_ratio'))}",
        f"- Forward (training mode): {_ms(t['fwd_train'])}; forward+backward: {_ms(t['fwd_bwd'])}; "
        f"full step with optimizer: {_ms(t['step'])}",
        f"- Throughput: {_number(throughput.get('step_tokens_per_s'), ',.0f')} tokens/s training, "
        f"{_number(throughput.get('infer_tokens_per_s'), ',.0f')} tokens/s inference",
    ]
    if mem:
        lines.append(
            f"- Peak memory: training step {format_bytes(mem.get('peak_step_bytes'))}, inference "
            f"{format_bytes(mem.get('peak_infer_bytes'))} ({_ratio(mem.get('train_to_infer_memory_ratio'))}); "
            f"of the step: parameters {format_bytes(mem.get('params_bytes'))}, "
            f"gradients {format_bytes(mem.get('grads_bytes'))}, "
            f"optimizer state {format_bytes(mem.get('optimizer_bytes'))}, activations "
            f"{format_bytes(mem.get('activations_bytes'))}"
        )
    return lines


def _oom_line(err: dict) -> str:
    message = (err.get("message") or "").strip().splitlines()
    return (
        f"- Out of memory{' in ' + md_text(err['phase']) if err.get('phase') else ''}: "
        f"{md_text(message[-1][:200]) if message else ''}"
    )


def _hardware_software(prov: dict, hw: str) -> str:
    gpu = (
        f", {_number(prov.get('gpu_memory_bytes'), '.0f', GIB)} GiB, driver {prov.get('driver')}, "
        f"CUDA {prov.get('cuda')}; host CPU {prov.get('cpu_model')}, {prov.get('cpu_cores')} cores"
        if prov.get("device_type") == "cuda"
        else ""
    )
    ram = f", {prov['ram_bytes'] / GIB:.0f} GiB RAM" if isinstance(prov.get("ram_bytes"), int) else ""
    return md_text(
        f"Hardware: {hw}{gpu}{ram}. "
        f"Software: backprop-bench {prov['harness_version']} ({commit_text(prov)}), torch {prov['torch']}, "
        f"bitsandbytes {prov.get('bitsandbytes')}, peft {prov.get('peft')}, transformers {prov.get('transformers')}, "
        f"Python {prov['python']}. Measured {prov['utc_time']}."
    )


def submitted(rec: Record, root: Path) -> bool:
    """Whether the record was read from the results folder's records/, not from a run's folder."""
    return rec.path is not None and rec.path.is_relative_to(root / RECORDS)


def signature_text(rec: Record) -> str:
    """Who vouches for the record: the allowed_signers name whose key signed it, or nobody. Said in a folder
    that names its signers (an allowed_signers file); elsewhere no record is signed and reports stay as they were."""
    return f"signed by {md_text(rec.signer)}" if rec.signer else "unsigned"


def cite(rec: Record, root: Path) -> str:
    """Every piece of record text is escaped (harness/report/escape.py): the snippet is pasted into articles."""
    hw = hardware_label(rec.provenance)
    lines = [f"**backprop-bench result `{rec.id}`** — {md_text(title(rec))}, on {md_text(hw)}", ""]
    lines += [f"> ⚠ {w}" for w in warnings(rec)]
    if warnings(rec):
        lines.append("")
    lines += _ok_lines(rec.metrics) if rec.ok else [_oom_line(rec.error or {})]
    lines += [
        f"- Self-checks: {rec.checks_passed}/{len(rec.checks)} passed",
        *([f"- Submitted: {signature_text(rec)}"] if signing_in_use(root) else []),
        "",
        _hardware_software(rec.provenance, hw),
        "",
        f"Result ID `{rec.id}` (config {rec.config_hash}), record {md_code(rec.source(root))}"
        f"{'' if submitted(rec, root) else ' (in a run folder, not submitted to the results folder)'}. Reproduce:",
        "",
        *fenced(reproduce_commands(rec), "sh"),
    ]
    return "\n".join(lines)
