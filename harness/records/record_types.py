"""The value types a record is built of, each bounded: text without NUL or lone surrogates, 64-bit integers,
finite floats, and `Json` (any of those, or a bounded list or object of them) for what the schema does not
name. harness/records/record_schema.py declares the record from them.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt
from typing_extensions import TypeAliasType

# Sizes: a record is ~10 KB and at most 1 MiB (validate.MAX_RECORD_BYTES); these bound each part of it.
MAX_TEXT = 16_384  # an error message, a traceback tail, a command line
MAX_NAME = 256  # a label, a version, a package, a phase
MAX_ITEMS = 4_096  # any list or object
MAX_INT = 2**63 - 1  # what every reader (pandas, numpy, JSON elsewhere) holds exactly as a 64-bit integer
MAX_DEPTH = 32  # nesting of objects and lists; records nest 6 deep


def _clean(text: str) -> str:
    """NUL ends strings in C and in file names; a lone surrogate cannot be written as UTF-8 at all."""
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains a lone surrogate (character {exc.start})") from None
    return text


Text = Annotated[str, Field(strict=True, max_length=MAX_TEXT), AfterValidator(_clean)]
Name = Annotated[str, Field(strict=True, max_length=MAX_NAME), AfterValidator(_clean)]
Int = Annotated[StrictInt, Field(ge=-MAX_INT, le=MAX_INT)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]
Positive = Annotated[StrictInt, Field(ge=1, le=MAX_INT)]


def _int_in_range(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ValueError(f"is outside the 64-bit range (|x| <= {MAX_INT})")
    return value


# strict float accepts an int (JSON does not tell 2 from 2.0) and refuses a bool, a string, NaN and infinity
Float = Annotated[float, Field(strict=True, allow_inf_nan=False), BeforeValidator(_int_in_range)]
Number = Union[Int, Float]
Hex16 = Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{16}$")]

Json = TypeAliasType(
    "Json",
    Union[
        None,
        StrictBool,
        Int,
        Float,
        Text,
        Annotated[list["Json"], Field(max_length=MAX_ITEMS)],
        Annotated[dict[Name, "Json"], Field(max_length=MAX_ITEMS)],
    ],
)


class Part(BaseModel):
    """An object of the record: the fields named below are typed, any other key holds Json."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=False)
    __pydantic_extra__: dict[Name, Json]
