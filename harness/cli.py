"""`bench`: the command line. Thin: parsing and messages here, the work in harness.config.compose / harness.run.sweep.

Exit codes: 0 every case ran or was already recorded (status ok, or oom: not fitting is a result); 1 some
case recorded error; 2 bad input, nothing ran; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import __version__
from harness.cli_estimate import cmd_estimate
from harness.cli_run import EXIT_BAD_INPUT, EXIT_CASE_FAILED, EXIT_OK, cmd_run
from harness.config.groups import ConfigError
from harness.help import MAIN_HELP
from harness.run.plan import check_device, output_path, split_output_dir

EXIT_INTERRUPTED = 130  # as `bench run` (the module docstring's exit codes)


def _results_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"bench {prog}", description=description)
    parser.add_argument(
        "--results", metavar="DIR", help="results folder (default: $BENCH_RESULTS_DIR, else results/ in the repository)"
    )
    return parser


def _noise_gate_flag(parser: argparse.ArgumentParser) -> None:
    """The reports' one switch for the noise gate (harness/report/frame.py left_out_reason)."""
    parser.add_argument(
        "--include-noisy",
        action="store_true",
        help="keep noisy records (a phase's timings flagged) and contended ones (the machine busier than its cores) "
        "in the figures; by default they are left out and counted",
    )


def _problems_note(problems) -> None:
    for p in problems:
        print(f"bench: skipped {p.path}: {p.reason}", file=sys.stderr)


def cmd_submit(argv: list[str]) -> int:
    from harness.records import folder as results_folder
    from harness.records.submit import CLEANED, DUPLICATE, REFUSED, TAKEN, submit

    parser = _results_parser(
        "submit",
        "Validate records and copy them into the results folder. Exit 0 when "
        "every record was taken (or was already there), 1 otherwise; 2 when --strict refused the submission.",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE|DIR", help="record files, or run directories (their *.json)"
    )
    parser.add_argument("--to", metavar="DIR", help="results folder (same as --results)")
    parser.add_argument(
        "--sign",
        metavar="KEY",
        type=Path,
        help="sign each record with this SSH private key (ssh-keygen -Y sign); the folder's allowed_signers "
        "must name its public key",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse the submission (exit 2, nothing copied) when a record is noisy, contended or from a modified "
        "tree; without it such records are taken with a warning",
    )
    args = parser.parse_args(argv)
    root = results_folder.resolve(args.to or args.results)
    outcomes = []

    def report(outcome) -> None:  # each line as soon as it is decided: an interrupted submit has said it all
        outcomes.append(outcome)
        print(outcome.line(), file=sys.stderr if outcome.status == REFUSED else sys.stdout, flush=True)
        if outcome.warning():
            print(outcome.warning(), file=sys.stderr, flush=True)

    def counts() -> str:
        taken, duplicate, refused = (sum(o.status == s for o in outcomes) for s in (TAKEN, DUPLICATE, REFUSED))
        return f"{taken} taken, {duplicate} duplicate, {refused} refused"

    try:
        submit(args.files, root, key=args.sign, report=report, strict=args.strict)
    except KeyboardInterrupt:
        print(
            f"bench: submit interrupted: {counts()} so far -> {root}; the rest was not submitted "
            "(rerun the same command: what was taken is reported as duplicate)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"{counts()} -> {root}")
    if args.strict and any(o.status == REFUSED and o.caveats for o in outcomes):
        return EXIT_BAD_INPUT
    settled = all(o.status in (TAKEN, DUPLICATE, CLEANED) for o in outcomes)
    return EXIT_OK if settled and outcomes else EXIT_CASE_FAILED


def _generate(argv: list[str], name: str, description: str, subdir: str, write) -> int:
    """bench table / bench plot: read the folder (reporting what cannot be read), write what `write` makes."""
    from harness.records import folder as results_folder

    parser = _results_parser(name, description)
    parser.add_argument("--out", metavar="DIR", help=f"where the files go (default: <results>/{subdir})")
    _noise_gate_flag(parser)
    args = parser.parse_args(argv)
    root = results_folder.resolve(args.results)
    records, problems = results_folder.read_folder(root)  # read and migrated once: `write` is handed the Records
    _problems_note(problems)
    if not records:
        print(f"bench: no valid records under {root / results_folder.RECORDS}; submit some first", file=sys.stderr)
        return EXIT_CASE_FAILED
    for path in write(records, root, Path(args.out) if args.out else root / subdir, include_noisy=args.include_noisy):
        print(path)
    return EXIT_CASE_FAILED if problems else EXIT_OK


def cmd_table(argv: list[str]) -> int:
    from harness.records.folder import TABLES
    from harness.report.tables import write_tables

    return _generate(argv, "table", "Write results.csv and results.md per schema major version.", TABLES, write_tables)


def cmd_plot(argv: list[str]) -> int:
    from harness.records.folder import PLOTS
    from harness.report.plots import write_plots

    return _generate(argv, "plot", "Regenerate the comparison plots from the results folder alone.", PLOTS, write_plots)


def cmd_site(argv: list[str]) -> int:
    from harness.report.site import write_site

    return _generate(argv, "site", "The results folder as a static website (opens from disk).", "site", write_site)


def cmd_cite(argv: list[str]) -> int:
    from harness.records import folder as results_folder
    from harness.report.cite import cite

    parser = _results_parser(
        "cite",
        "Print a Markdown snippet citing one result: numbers, hardware, software, "
        "the result ID and the commands that reproduce it.",
    )
    parser.add_argument("id", help="a result id, or a unique prefix of one (at least 6 hex digits)")
    args = parser.parse_args(argv)
    root = results_folder.resolve(args.results)
    if len(args.id) < 6:
        raise ConfigError("id", f"{args.id!r} is too short; give at least 6 hex digits of the id")
    runs = Path("results") / results_folder.RUNS  # where `bench run` writes by default, from here
    matches = results_folder.find(root, args.id, runs=(runs,))
    if not matches:
        where = ", ".join(
            str(p) for p in dict.fromkeys([root / results_folder.RECORDS, root / results_folder.RUNS, runs])
        )
        print(f"bench: no record with id {args.id!r} under {where}", file=sys.stderr)
        return EXIT_CASE_FAILED
    if len({m.id for m in matches}) > 1:
        ids = ", ".join(sorted({m.id for m in matches}))
        print(f"bench: {args.id!r} matches several results ({ids}); give more digits", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(cite(matches[0], root))
    return EXIT_OK


def cmd_claims(argv: list[str]) -> int:
    from harness.records import folder as results_folder
    from harness.report import claims

    parser = _results_parser(
        "claims",
        "A verdict for every claim of the seed documents (suites/claims.yaml), "
        "from the results folder and the analytic model.",
    )
    parser.add_argument("--format", choices=["md", "json"], default="md")
    parser.add_argument("--out", metavar="FILE", help="write there instead of standard output")
    parser.add_argument(
        "--signed-only",
        action="store_true",
        help="judge from signed records only (those whose signature verifies against <results>/allowed_signers)",
    )
    _noise_gate_flag(parser)
    args = parser.parse_args(argv)
    root = results_folder.resolve(args.results)
    records, problems = results_folder.read_folder(root)
    _problems_note(problems)
    if args.signed_only:
        unsigned = sum(r.signer is None for r in records)
        records = [r for r in records if r.signer is not None]
        print(f"bench: judging from {len(records)} signed record(s); {unsigned} unsigned left out", file=sys.stderr)
    results = claims.report(claims.verdicts(records, root, args.include_noisy))
    from harness.report.figure_pages import base_stem, page_number

    if args.format == "json":
        text = claims.as_json(results)
    else:
        base = Path(args.out).parent if args.out else root
        shown = {
            "activations_vs_depth",
            "activations_vs_seq_len",
            "predicted_vs_measured",
            "checkpointing_tradeoff",
            "memory_by_category",
            "compute_ratio",
        }
        plots = sorted(
            (p for p in (root / results_folder.PLOTS).glob("*/*.svg") if base_stem(p) in shown),
            key=lambda p: (p.parent.name, base_stem(p), page_number(p)),  # a figure's pages in order
        )
        text = claims.markdown(results, [os.path.relpath(p, base) for p in plots])
    if args.out:
        from harness.records.io import replace_file
        from harness.records.safe_fs import confined

        with confined(root):
            replace_file(Path(args.out), text)
        print(args.out)
    else:
        print(text, end="")
    return EXIT_OK


def cmd_fit(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(
            "usage: bench fit [OVERRIDES ...] fit.search=workload.batch_size|workload.seq_len [fit.max=N]\n\n"
            "The largest value that fits in the device, or in device.memory_budget_gib=N: doubling from 1,\n"
            "then bisecting, each probe a case in its own process. Writes the probes' records and fit.json\n"
            "into output_dir, and prints the answer beside the analytic model's prediction."
        )
        return EXIT_OK
    import shlex

    from harness.config.compose import make_case
    from harness.run import fit as fit_mod

    unknown = [a for a in argv if a.startswith("-")]
    if unknown:
        raise ConfigError("arguments", f"unknown option {unknown[0]!r}; bench fit takes overrides only")
    search, limit, base = fit_mod.split_fit_args(argv)
    chosen, base = split_output_dir(base)
    output_dir = output_path(chosen, "fit")
    first = make_case([*base, f"{search}=1"])
    check_device([first])
    command = "bench fit " + " ".join(shlex.quote(a) for a in argv if not a.startswith("output_dir="))
    print(f"bench: fitting {search} -> {output_dir}", file=sys.stderr)
    outcome = fit_mod.run_fit(first, base, search, limit, output_dir, command)
    result, predicted, path, where = outcome.result, outcome.predicted, outcome.path, outcome.where
    pred = predicted.get("value")
    pred_text = (
        f"predicted by the analytic model: {pred} ({predicted.get('formula', '')})"
        if pred is not None
        else f"no prediction: {predicted.get('reason')}"
    )
    if result.stopped_by_error:
        print(f"bench: a probe failed, so the search stopped: {result.stopped_by_error}", file=sys.stderr)
    if result.max_fitting is None and result.probes and not result.stopped_by_error:
        print(f"{search}: even 1 does not fit in {where} (measured); {pred_text}")
    elif result.probes and not result.stopped_by_error:
        beyond = (
            f"; {result.first_not_fitting} does not"
            if result.first_not_fitting
            else f"; fit.max={limit} reached without running out of memory"
        )
        print(f"{search}: {result.max_fitting} fits in {where} (measured){beyond}\n{pred_text}")
    print(f"{len(result.probes)} probe(s); records and {path.name} in {output_dir}/")
    return EXIT_CASE_FAILED if result.stopped_by_error else EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "submit": cmd_submit,
    "table": cmd_table,
    "plot": cmd_plot,
    "cite": cmd_cite,
    "claims": cmd_claims,
    "site": cmd_site,
    "fit": cmd_fit,
    "estimate": cmd_estimate,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="bench", description=MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=True
    )
    parser.add_argument("--version", action="version", version=f"backprop-bench {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv or ["--help"])
        return EXIT_OK
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"bench: unknown command {command!r}; allowed: {', '.join(COMMANDS)} (see bench --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return COMMANDS[command](rest)
    except ConfigError as exc:
        print(f"bench: config error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an unwritable folder, a full disk: what failed, without a traceback
        print(
            f"bench: {command}: {exc.strerror or exc} ({exc.filename or ''}); nothing partial was left behind",
            file=sys.stderr,
        )
        return EXIT_CASE_FAILED


if __name__ == "__main__":
    sys.exit(main())
