"""backprop-bench. The package's rooms, by where their code runs:

- spec/     what a case is, without torch: config schema and validation, presets, Hydra composition (the only
            Hydra user), the analytic model, shared shapes and rules;
- measure/  what runs inside a case's own process, with torch: the workload, timing, memory, FLOPs, budgets;
- run/      the parent: one process per case, sweeps, `bench fit`;
- records/  the record: its schema, the one atomic write, validation, the results folder, submission;
- report/   what is made from a results folder, without torch: tables, plots, claims, citations, the summary.
"""

from pathlib import Path

__version__ = "0.1.0"


def repo_root() -> Path:
    """The checkout: suites/, requirements.lock and results/ live beside the package."""
    return Path(__file__).resolve().parent.parent
