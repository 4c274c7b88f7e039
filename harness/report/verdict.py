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
CPU_ONLY = "on CPU only"
NOT_ON_SUBJECT = "not yet measured on a GPU"
# Said on the home page and in claims.md while no verdict read a GPU record.
NO_GPU_VERDICT = (
    "No verdict here has been measured on a GPU: every record the verdicts read was measured on a CPU (toy model "
    "sizes, host memory). A claim about GPUs (VRAM, kernels) judged on CPU alone reads “not yet measured on a GPU”; "
    "“make bench SUITE=gpu-quick” on a GPU measures them."
)
WHERE_LISTED = 3  # configurations named on each side of "holds for k of n"; the claim's page lists every one


@dataclass(frozen=True)
class Verdict:
    """What a judge says about one claim. `parts` are the judged statements (label, held?) the verdict was
    made from (None: not measured); `rows` the rows of the grouped frame (harness/report/frame.py) the judge read
    for it, in the frame's order, what a claim's page lists as the configurations that fed it (None: an analytic
    claim, answered from the model's shapes). `left_out`: the records the noise gate kept from it (those the judge
    would have read); `devices` the device types of the rows it read; `subject` what the claim is about where that
    is a GPU (suites/claims.yaml `gpu_subject`, "" otherwise). `beside`: (figure, measured, estimated) rows and
    `commands` to run on one's own card, for claims about a named model's memory."""

    verdict: str
    measured: str = "—"
    predicted: str = ""
    hardware: str = "—"
    parts: tuple[tuple[str, bool | None], ...] = field(default=(), compare=False)
    rows: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    left_out: int = field(default=0, compare=False)
    devices: tuple[str, ...] = field(default=(), compare=False)
    subject: str = field(default="", compare=False)
    beside: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)
    commands: tuple[str, ...] = field(default=(), compare=False)

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
        counted: str = "",
    ) -> Verdict:
        """Holds when every judged part holds, does not when none does. Between: where the parts are counted
        (`counted`: "configurations", or what else they are), "holds for k of n configurations" with where it holds
        and where it does not; where they are statements of the claim, "holds under stated conditions" naming those
        that hold."""
        parts = tuple((label, None if ok is None else bool(ok)) for label, ok in parts)
        judged = [(label, ok) for label, ok in parts if ok is not None]
        if not judged:
            verdict = NOT_MEASURED
        elif all(ok for _, ok in judged):
            verdict = HOLDS
        elif not any(ok for _, ok in judged):
            verdict = FAILS
        elif counted:
            verdict = holds_for(judged, counted)
        else:
            verdict = CONDITIONAL + ": " + "; ".join(label for label, ok in judged if ok)
        return cls(verdict, measured, predicted, hardware, parts, rows)

    @property
    def judged(self) -> list[bool]:
        return [ok for _, ok in self.parts if ok is not None]

    @property
    def cpu_only(self) -> bool:
        """Judged from measurements, every one of them made on a CPU."""
        return self.verdict != NOT_MEASURED and bool(self.devices) and set(self.devices) == {"cpu"}

    @property
    def words(self) -> str:
        """The verdict as every report says it: what was found, and where it was judged when only on CPUs; a claim
        about GPUs judged on CPUs alone is first of all not yet measured on its subject."""
        return self.scoped(self.verdict)

    @property
    def short(self) -> str:
        """`words` without the parts named ("holds for 2 of 5 configurations"), for a table of every claim."""
        return self.scoped(self.verdict.split(": ")[0])

    @property
    def subject_unmeasured(self) -> bool:
        return self.cpu_only and bool(self.subject)

    def scoped(self, verdict: str) -> str:
        if not self.cpu_only:
            return verdict
        if self.subject:
            return f"{NOT_ON_SUBJECT} ({self.subject}); {CPU_ONLY}: {verdict}"
        return f"{verdict} ({CPU_ONLY})"

    def fields(self) -> dict:
        """The figures of the report (markdown / json)."""
        return {
            "verdict": self.words,
            "measured": self.measured,
            "predicted": self.predicted,
            "hardware": self.hardware,
            "left_out": self.left_out,
        }


def holds_for(judged: list[tuple[str, bool]], counted: str = "configurations") -> str:
    """ "holds for k of n configurations: label, …; not for label, …", at most WHERE_LISTED named on each side."""

    def named(labels: list[str]) -> str:
        more = len(labels) - WHERE_LISTED
        return ", ".join(labels[:WHERE_LISTED]) + (f" and {more} more" if more > 0 else "")

    held = [label for label, ok in judged if ok]
    failed = [label for label, ok in judged if not ok]
    return f"holds for {len(held)} of {len(judged)} {counted}: {named(held)}; not for {named(failed)}"


def no_gpu_verdict(verdicts: list[Verdict]) -> bool:
    """True while no verdict was judged from a record measured on a GPU."""
    return not any(d != "cpu" for v in verdicts if v.verdict != NOT_MEASURED for d in v.devices)
