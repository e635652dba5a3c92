"""JSON for the API's responses, with money exact: a Decimal is written as a JSON number, digit for digit.

`json.dumps` cannot write a Decimal as a number without going through float (Powertools' encoder
does `float(d)`); this small writer walks the value and writes each Decimal with `format(d, "f")`.
A JavaScript client still reads a number; a Python client reading with `parse_float=Decimal` gets
the exact figure back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel, SecretStr


def dumps(value: Any) -> str:
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool | int | str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a money amount must be finite")
        out.append(format(value, "f"))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, Enum):
        _write(value.value, out)
    elif isinstance(value, SecretStr):
        raise TypeError("a secret never goes into a response")
    elif isinstance(value, BaseModel):
        _write(value.model_dump(mode="python", exclude_none=False), out)
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")
