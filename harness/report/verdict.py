"""A judge's answer about one claim, and the verdict words every report uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

HOLDS, CONDITIONAL, FAILS, NOT_MEASURED = (
    "holds",
    "holds under stated conditions",
    "does not hold",
    "not measured on this hardware",
)


@dataclass(frozen=True)
class Verdict:
    """What a judge says about one claim. `parts` are the judged statements (label, held?) the verdict was
    made from (None: not measured); `rows` the rows of the grouped frame (harness/report/frame.py) the judge read
    for it, in the frame's order, what a claim's page lists as the configurations that fed it (None: an analytic
    claim, answered from the model's shapes). Neither is part of the report's four figures."""

    verdict: str
    measured: str = "—"
    predicted: str = ""
    hardware: str = "—"
    parts: tuple[tuple[str, bool | None], ...] = field(default=(), compare=False)
    rows: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @classmethod
    def not_measured(
        cls, measured: str = "—", predicted: str = "", hardware: str = "—", rows: pd.DataFrame | None = None
    ) -> Verdict:
        return cls(NOT_MEASURED, measured, predicted, hardware, rows=rows)

    @classmethod
    def of(
        cls,
        parts: list[tuple[str, bool | None]],
        measured: str,
        predicted: str,
        hardware: str,
        rows: pd.DataFrame | None = None,
    ) -> Verdict:
        """Holds when every judged part holds, holds under stated conditions (naming them) when some do."""
        parts = tuple((label, None if ok is None else bool(ok)) for label, ok in parts)
        judged = [(label, ok) for label, ok in parts if ok is not None]
        if not judged:
            verdict = NOT_MEASURED
        elif all(ok for _, ok in judged):
            verdict = HOLDS
        elif any(ok for _, ok in judged):
            verdict = CONDITIONAL + ": " + "; ".join(label for label, ok in judged if ok)
        else:
            verdict = FAILS
        return cls(verdict, measured, predicted, hardware, parts, rows)

    def fields(self) -> dict:
        """The four figures of the report (markdown / json)."""
        return {
            "verdict": self.verdict,
            "measured": self.measured,
            "predicted": self.predicted,
            "hardware": self.hardware,
        }
