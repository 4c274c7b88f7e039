"""Escaping of record text for every format the reports write (HTML's is markup.esc, in harness/report/site).

Record text is untrusted: a submitter chooses cpu_model, overrides, error messages. What people paste or open
must show that text, never obey it:

- Markdown (`md_text`, `md_cell`): one line (newlines and control characters become spaces, so no heading or
  list can start), no raw HTML (`<`, `>`, `&` become entities), no inline link (`](` is broken), no code span
  (backticks escaped); in a table cell `|` is escaped too.
- Markdown code blocks (`fenced`): the fence is longer than any run of backticks inside, so no line closes it.
- CSV (`csv_text`): a string cell that a spreadsheet would take as a formula (starting with = + - @, tab or CR)
  is prefixed with a single quote, as OWASP's CSV-injection guidance says; numbers are left as numbers (a
  negative number is data, not a formula).
"""

from __future__ import annotations

import re

import pandas as pd

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_CODE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")  # tab stays (shell text)
_BACKTICKS = re.compile(r"`+")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def md_text(value: object) -> str:
    """Record text inside a Markdown paragraph or heading: shown as it is, obeyed as nothing."""
    text = _CONTROL.sub(" ", str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("`", "\\`").replace("](", "]\\(")


def md_cell(value: object) -> str:
    """Record text in a Markdown table cell: md_text, and `|` cannot end the cell."""
    return md_text(value).replace("|", "\\|")


def md_code(value: object) -> str:
    """Record text as an inline code span: the delimiter is longer than any backtick run inside."""
    text = _CONTROL.sub(" ", str(value))
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(lines: list[str], info: str = "") -> list[str]:
    """A fenced code block around `lines`: its fence is longer than any backtick run in them (CommonMark: a
    fence closes only on a run at least as long), so no text inside can close it, on any line. A newline inside
    an element (a quoted override) stays: it is shell text; other control characters become spaces."""
    body = [_CODE_CONTROL.sub(" ", part) for line in lines for part in line.split("\n")]
    longest = max((len(m) for line in body for m in _BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", *body, fence]


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as text, never runs: strings that start a formula get a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(frame: pd.DataFrame) -> str:
    """The frame as CSV with every string cell neutralised (number columns are left as they are)."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):  # object or string columns; bools, numbers stay
            safe[column] = safe[column].map(csv_cell)
    safe.columns = [csv_cell(c) for c in safe.columns]
    return safe.to_csv(index=False, lineterminator="\n")
