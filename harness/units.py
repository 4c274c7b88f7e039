"""Units, said once: byte multiples and how a byte count is written for people. Records keep base units
(bytes, seconds); only what people read is converted, always with the unit beside the number."""

from __future__ import annotations

KIB, MIB, GIB = 1024, 1024**2, 1024**3
GB = 10**9  # decimal gigabytes: what the seed documents and card datasheets write


def format_bytes(value) -> str:
    """A byte count for a sentence: GiB from 1 GiB up, MiB below; "not measured" for a missing value."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "not measured"
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / MIB:.1f} MiB"


def table_scale(largest_bytes: float) -> tuple[int, str]:
    """(divisor, unit) for a table or axis of byte figures: GiB once the largest reaches 4 GiB, else MiB."""
    return (GIB, "GiB") if largest_bytes >= 4 * GIB else (MIB, "MiB")


# A metric's unit is read from the end of its name, the longest ending first: `fwd_bwd_flop_per_s` is a rate, not
# a time, although it also ends in `_s`.
NAME_UNITS = (
    ("_flop_per_s", "FLOP/s"),
    ("_samples_per_s", "samples/s"),
    ("_tokens_per_s", "tokens/s"),
    ("_per_s", "/s"),
    ("_bytes", "B"),
    ("_s", "s"),
)
TERA = 10**12


def unit_of(name: str) -> str | None:
    """The unit a metric's name carries (FLOP/s, samples/s, tokens/s, /s, B, s); None: a ratio, count or label."""
    return next((unit for ending, unit in NAME_UNITS if name.endswith(ending)), None)


def format_flop_rate(value: float) -> str:
    """A FLOP rate for people: TFLOP/s from 0.1 TFLOP/s up, GFLOP/s below (CPU figures are GFLOP/s)."""
    return f"{value / TERA:.3g} TFLOP/s" if value >= 0.1 * TERA else f"{value / 10**9:.3g} GFLOP/s"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != INF


INF = float("inf")


def ci_text(lo, hi, coverage) -> str:
    """A confidence interval of a ratio with the level it reaches, in the same words on every page: `2.03–2.41,
    93.8% CI`. The interval of a median comes from order statistics (harness/measure/timing.py median_ci), so its
    level is the binomial coverage the record stores (95% or more from 6 repeats on, 93.8% at 5), never a nominal
    95% written beside it."""
    if not (_finite(lo) and _finite(hi)):
        return "CI not available"
    level = f"{coverage * 100:.1f}% CI" if _finite(coverage) and 0 < coverage <= 1 else "CI of unrecorded level"
    return f"{lo:.2f}–{hi:.2f}, {level}"
