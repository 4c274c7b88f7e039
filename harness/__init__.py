"""backprop-bench. The package's rooms, by where their code runs:

- config/   what a case is, without torch: the typed configuration tree and its validation, Hydra composition
            (compose.py, the only Hydra user), the planned Case, the rules every room shares;
- families/ one module per model family (mlp, llama, hf): its validation, labels, shapes, and how it is built
            (torch imported only when a model is built);
- predict/  the analytic model, without torch: parameters, activations, per-rank sharding, `bench estimate`;
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
