"""`bench estimate [OVERRIDES] [--card GB ...] [--format table|json] [--results DIR]`: will it fit, answered from
the analytic model in a second, with no GPU and no weights; beside it, how far such predictions were from the
measurements in the results folder. `bench fit` then measures (harness/run/fit.py).

torch is imported only where no closed form covers the configuration's activations: then the real model and
method are traced under FakeTensorMode (harness/measure/traced.py), which takes seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from harness.config.groups import BenchConfig, ConfigError

USAGE = (
    "bench estimate [OVERRIDES ...] [--card GB ...] [--format table|json] [--results DIR] [--no-trace | --replay] | "
    "bench estimate --published [--format table|json] [--no-trace | --save-traces]"
)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="bench estimate",
        usage=USAGE,
        description="Predicted memory of a training step and of inference, per card: whether it fits and the "
        "largest batch size and sequence length that would. No GPU, no weights, no download.",
    )
    parser.add_argument("--card", type=float, action="append", metavar="GB", help="a card size in GiB (repeatable)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--results", metavar="DIR", help="results folder (default: $BENCH_RESULTS_DIR, else results/)")
    parser.add_argument(
        "--no-trace", action="store_true", help="where no closed form exists, answer null instead of tracing"
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="replay the step's allocations through the CUDA caching allocator's rules (imports torch; seconds to "
        "minutes): the reserve over allocated, added to the device level where no GPU record measured one",
    )
    parser.add_argument(
        "--published",
        action="store_true",
        help="predict the published measurements of harness/predict/published.json, beside each its error",
    )
    parser.add_argument(
        "--save-traces",
        action="store_true",
        help="with --published: record the rows' traces and replays in harness/predict/published_traced.json (the "
        "site reads it)",
    )
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        raise ConfigError("arguments", f"unknown option {unknown[0]!r}; usage: {USAGE}")
    for gb in args.card or []:
        if not 0 < gb <= 1 << 20:
            raise ConfigError("--card", f"must be a positive number of GiB, got {gb:g}")
    return args, rest


def traced(cfg: BenchConfig, device_type: str) -> dict:
    print("bench: no closed form covers these activations; tracing the model", end="", file=sys.stderr)
    with _library_log():
        from harness.measure.traced import traced_activations

        return traced_activations(cfg, device_type)


def replayed(cfg: BenchConfig, device_type: str, phase: str) -> dict:
    print("bench: replaying the run's allocations through the caching allocator's rules", end="", file=sys.stderr)
    with _library_log():
        from harness.measure.traced import replayed_reserve

        return replayed_reserve(cfg, device_type, phase)


@contextlib.contextmanager
def _library_log():
    """The libraries' warnings (transformers' FutureWarnings) go to the trace log, not into the answer."""
    from harness.run.library_log import into, trace_log

    log = trace_log()
    print(f" (imports torch; library messages go to {log})...", file=sys.stderr)
    with open(log, "a") as stream, into(stream):
        yield


def cmd_estimate(argv: list[str]) -> int:
    from harness.config.compose import make_case, override_key
    from harness.predict import estimate
    from harness.predict.estimate_defaults import assumed_overrides
    from harness.records import folder as results_folder
    from harness.report.estimate_calibration import calibration, device_overheads, error_band, with_replayed_reserve
    from harness.report.estimate_table import as_json, table

    args, overrides = parse(argv)
    if args.published:
        return cmd_published(args, overrides)
    if args.save_traces:
        raise ConfigError("--save-traces", "records the published rows' traces: give it with --published")
    if any(o.split("=", 1)[0] in ("suite", "output_dir") for o in overrides):
        raise ConfigError("overrides", "bench estimate answers for one configuration: no suite=, no output_dir=")
    cfg = make_case(overrides).config  # exit 2 on bad input, before anything is computed
    extra, assumed = assumed_overrides(cfg, {override_key(o) for o in overrides})
    if extra:  # bench estimate's own defaults (harness/predict/estimate_defaults.py), validated like the user's
        cfg = make_case([*overrides, *extra]).config
    if args.replay and args.no_trace:
        raise ConfigError("--replay", "replays a traced run: it cannot be given with --no-trace")
    cards = sorted(set(args.card)) if args.card else list(estimate.CARDS_GB)
    predicted = estimate.step(cfg, "cuda", None if args.no_trace else traced)
    replay = replayed(cfg, "cuda", "step") if args.replay else None
    records, problems = results_folder.read_folder(results_folder.resolve(args.results))
    for p in problems:
        print(f"bench: skipped {p.path}: {p.reason}", file=sys.stderr)
    answer = {
        "config": cfg,
        "assumed": assumed,
        "predicted": predicted,
        "calibration": calibration(records, cfg),
        "replay": replay,
    }
    answer["band"] = error_band(answer["calibration"])
    overheads = with_replayed_reserve(device_overheads(records, cards), replay)
    answer["cards"] = estimate.cards(cfg, predicted, overheads, cards, answer["band"])
    print(as_json(answer) if args.format == "json" else table(answer))
    return 0


def cmd_published(args: argparse.Namespace, overrides: list[str]) -> int:
    """`bench estimate --published`: every published row predicted, its error, the median and the largest."""
    from harness.predict.published import TRACED_FILE, evaluate, recording, replay_key, trace_key
    from harness.records.io import replace_file
    from harness.report.estimate_table import published_json, published_table

    if overrides or args.card or args.replay:
        raise ConfigError(
            "--published", "predicts (and replays) the published rows' own setups: no overrides, --card or --replay"
        )
    if args.save_traces and args.no_trace:
        raise ConfigError("--save-traces", "records the rows' traces: it cannot be given with --no-trace")
    traces: dict = {}
    if args.no_trace:
        result = evaluate()
    else:
        result = evaluate(recording(traced, trace_key, traces), recording(replayed, replay_key, traces))
    if args.save_traces:
        replace_file(TRACED_FILE, json.dumps(traces, indent=1, sort_keys=True) + "\n")
        print(f"bench: {len(traces)} traces and replays recorded in {TRACED_FILE}", file=sys.stderr)
    print(published_json(result) if args.format == "json" else published_table(result))
    return 0
