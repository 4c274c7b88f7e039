"""What `bench --help` and `bench run --help` print: the groups and their options from suites/, every field
with its one-line doc from the schema (harness/config/groups.py)."""

from __future__ import annotations

DEFAULT_SUITE = "default"  # resolved to smoke (no GPU) or default-gpu (CUDA visible)

MAIN_HELP = """\
backprop-bench: what backpropagation costs, measured.

usage: bench run [-m] [OVERRIDES ...]     run one case, a suite (suite=NAME) or a sweep (-m a=1,2)
       bench run --help                   every config group, option and field
       bench submit FILE|DIR ... [--to DIR]   validate records and copy them into the results folder
       bench table [--results DIR] [--out DIR]   CSV + Markdown tables per schema version
       bench plot [--results DIR] [--out DIR]    the comparison plots (SVG + PNG), byte-identical per folder
       bench cite ID [--results DIR]             a Markdown snippet for an article, with reproducing commands
       bench claims [--results DIR] [--format md|json] [--out FILE]   a verdict for every seed claim
       bench site [--results DIR] [--out DIR]    the results folder as a static website (default <results>/site/)
       bench fit [OVERRIDES] fit.search=workload.batch_size   the largest batch (or seq_len) that fits
       bench estimate [OVERRIDES] [--card GB ...] [--format table|json]   will it fit: predicted, in a second

The results folder is --results DIR (--to for submit), else $BENCH_RESULTS_DIR, else results/.

examples:
  bench run model=llama model.preset=tiny method=lora
  bench run suite=smoke
  bench run -m method=lora,qlora workload.batch_size=1,4
"""


def run_help() -> str:
    from harness.config.compose import group_options
    from harness.config.groups import SCHEMAS, BenchConfig, field_docs

    lines = [
        "usage: bench run [-m|--multirun] [--cfg] [--force] [--no-wait] [OVERRIDES ...]",
        "",
        "Runs one case, or every case of `suite=NAME`, each in its own process; writes one JSON record",
        "per case into output_dir (default: results/runs/<UTC time>-<name>/). `-m` crosses comma lists",
        "(Hydra sweep syntax): bench run -m method=lora,qlora workload.batch_size=1,4",
        "`--cfg` prints the composed config of each case and runs nothing.",
        "Rerunning with the same output_dir skips cases already recorded there (by config hash);",
        "`--force` reruns them.",
        "`launcher=slurm` makes each case a SLURM job (submitit); `--no-wait` returns once they are",
        "submitted, and rerunning the same command collects their records and resumes.",
        "",
        "groups (GROUP=OPTION):",
    ]
    for group in ("model", "method", "precision", "checkpointing", "device", "parallel", "launcher", "suite"):
        options = group_options(group)
        if group == "suite":
            options = [DEFAULT_SUITE + " (smoke without a GPU, default-gpu with one)"] + options
        lines.append(f"  {group:<14} {' | '.join(options)}")
    lines += ["", "fields (KEY=VALUE):"]
    for prefix, schema in SCHEMAS.items():
        group = prefix.split("=")[0]
        lines.append(f"  [{prefix}]")
        for name, doc in field_docs(schema).items():
            if name == "name":
                continue
            lines.append(f"    {group}.{name:<20} {doc}")
    lines.append(f"  {'output_dir':<26} {field_docs(BenchConfig)['output_dir']}")
    return "\n".join(lines)
