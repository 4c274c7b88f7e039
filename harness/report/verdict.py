"""A judge's answer about one claim, and the verdict words every report uses."""

from __future__ import annotations

from dataclasses import dataclass, field

HOLDS, CONDITIONAL, FAILS, NOT_MEASURED = (
    "holds",
    "holds under stated conditions",
    "does not hold",
    "not measured on this hardware",
)


@dataclass(frozen=True)
class Verdict:
    """What a judge says about one claim. `parts` are the judged statements (label, held?) the verdict was
    made from (None: not measured); they are not part of the report."""

    verdict: str
    measured: str = "—"
    predicted: str = ""
    hardware: str = "—"
    parts: tuple[tuple[str, bool | None], ...] = field(default=(), compare=False)

    @classmethod
    def not_measured(cls, measured: str = "—", predicted: str = "", hardware: str = "—") -> Verdict:
        return cls(NOT_MEASURED, measured, predicted, hardware)

    @classmethod
    def of(cls, parts: list[tuple[str, bool | None]], measured: str, predicted: str, hardware: str) -> Verdict:
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
        return cls(verdict, measured, predicted, hardware, parts)

    def fields(self) -> dict:
        """The four figures of the report (markdown / json)."""
        return {
            "verdict": self.verdict,
            "measured": self.measured,
            "predicted": self.predicted,
            "hardware": self.hardware,
        }
