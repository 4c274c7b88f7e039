"""`bench run`: planning a sweep (a suite, `-m`, one case), running it here or as jobs, and its summary."""

from __future__ import annotations

import sys

from harness.config.groups import ConfigError
from harness.help import DEFAULT_SUITE, run_help
from harness.run.plan import check_device, default_suite, output_path, split_output_dir

# Exit codes of every command (harness/cli.py's docstring says what each means).
EXIT_OK, EXIT_CASE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


RUN_FLAGS = ("-m", "--multirun", "--cfg", "--force", "--no-wait")


def _overrides(argv: list[str]) -> list[str]:
    overrides = [a for a in argv if a not in RUN_FLAGS]
    unknown = [a for a in overrides if a.startswith("-")]
    if unknown:
        raise ConfigError(
            "arguments", f"unknown option {unknown[0]!r}; allowed: -m/--multirun, --cfg, --force, --no-wait, --help"
        )
    return [f"suite={default_suite()}" if o == f"suite={DEFAULT_SUITE}" else o for o in overrides]


def cmd_run(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(run_help())
        return EXIT_OK
    multirun = any(a in ("-m", "--multirun") for a in argv)
    wait = "--no-wait" not in argv

    from harness.config.compose import plan_cases, plan_launcher, to_yaml

    chosen, overrides = split_output_dir(_overrides(argv))
    cases = plan_cases(overrides, multirun)
    launcher = plan_launcher(overrides, cases)
    if not wait and launcher.name != "slurm":
        raise ConfigError(
            "--no-wait", f"applies to launcher=slurm (launcher={launcher.name} runs its cases on this machine)"
        )
    output_dir = output_path(chosen, cases[0].suite or ("sweep" if multirun else "case"))
    if "--cfg" in argv:
        for case in cases:
            print(f"# bench run {' '.join(case.overrides)}\n{to_yaml(case.config)}")
        return EXIT_OK
    if launcher.name != "slurm":  # a SLURM job's node has its own devices
        cases = check_device(cases)

    from harness.run.sweep import run_sweep

    print(f"bench: {len(cases)} case(s) -> {output_dir}", file=sys.stderr)
    result = run_sweep(cases, output_dir, force="--force" in argv, launcher=launcher, wait=wait)
    for failure in result.job_failures:
        print(f"bench: {failure}", file=sys.stderr)
    if result.submitted:
        print(
            f"bench: {len(result.submitted)} job(s) submitted ({launcher.name}); each writes its record into "
            f"{output_dir}/. Rerun the same command with output_dir={output_dir} to collect them and resume.",
            file=sys.stderr,
        )
        return EXIT_OK
    return _summary(result, output_dir)


def _summary(result, output_dir) -> int:
    """The table of what ran, the counts, and what to do next; the exit code they give."""
    from harness.report.summary import format_table

    for line in result.unreadable:
        print(f"bench: not a record, left as it is: {output_dir}/{line}", file=sys.stderr)
    if result.records:
        print(format_table(result.records))
    failed = result.count("error")
    print(
        f"\n{len(result.records)} ran ({result.count('ok')} ok, {result.count('oom')} out of memory, "
        f"{result.count('error')} error), {len(result.skipped)} skipped (already recorded in {output_dir}/; "
        f"--force reruns them)"
        + (f", {result.not_run} not run (interrupted)" if result.interrupted else "")
        + f"; logs in {output_dir}/logs/"
    )
    if result.interrupted:
        print(
            f"bench: interrupted; every record written is complete. Resume with the same command and "
            f"output_dir={output_dir}",
            file=sys.stderr,
        )
        return 130
    if result.count("ok") + result.count("oom"):
        _next_steps(result.records, output_dir)
    return EXIT_CASE_FAILED if failed else EXIT_OK


def _next_steps(records: list[dict], output_dir) -> None:
    """Submit what is clean; where a record is noisy, contended or from a modified tree, say which and why and
    how to measure it again, and do not invite a submission the verdicts would leave out."""
    from harness.report.summary import weak_records

    weak = weak_records(records)
    if not weak:
        print(
            f"submit them to the shared results folder: make submit RUN={output_dir}\n"
            f"  (= bench submit {output_dir} [--to DIR]); then `make plots` regenerates tables and plots"
        )
        return
    print(f"\n{len(weak)} of {len(records)} record(s) are not clean measurements:")
    for line in weak:
        print(f"  {line}")
    print(
        "Measure again on an idle machine (commit any code change first): the same command into a new output_dir, "
        "then submit that run. `bench submit` warns about such records; `bench submit --strict` refuses them."
    )
