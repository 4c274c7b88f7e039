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
