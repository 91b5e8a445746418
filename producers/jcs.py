"""RFC 8785 JSON Canonicalization Scheme (JCS): the bytes an event's signature is over.

Any language can produce them: object keys sorted by their UTF-16 code units, numbers as
ECMAScript's ``Number.prototype.toString`` writes them (IEEE 754 doubles: ``1.0`` → ``1``,
``1e21`` → ``1e+21``, ``-0`` → ``0``), strings with only the escapes JSON requires (``\\"``,
``\\\\``, ``\\b \\f \\n \\r \\t``, other control characters as lower-case ``\\u00xx``; everything
else as UTF-8), no whitespace. JavaScript's ``JSON.stringify`` with sorted keys is JCS, and
so is any JCS library (``canonicalize`` on npm, ``erdtman/java-json-canonicalization``, …).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

__all__ = ["CanonicalizationError", "canonicalize"]

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}
_ESCAPE_TABLE = {i: f"\\u{i:04x}" for i in range(0x20)} | {ord(c): e for c, e in _ESCAPES.items()}


#: arrays and objects nested deeper are refused (the recursion stays far from Python's limit)
MAX_DEPTH = 256


class CanonicalizationError(ValueError):
    """A value JCS cannot express (NaN, infinity, a number beyond a double, a lone surrogate,
    a non-JSON type) or nested deeper than :data:`MAX_DEPTH`."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value (dicts, lists, str, int, float, bool, None)."""
    out: list[str] = []
    _write(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalizationError("a string holds a lone surrogate (not Unicode text)") from None


def _write(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalizationError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int | float):
        out.append(number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def _utf16_order(key: Any) -> bytes:
    if not isinstance(key, str):
        raise CanonicalizationError(f"object key {key!r} is not a string")
    # big-endian bytes compare exactly as the code units they spell
    return key.encode("utf-16-be", "surrogatepass")


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def number(value: int | float) -> str:
    """ECMAScript's shortest round-trip form of ``value`` as a double (RFC 8785 §3.2.2.3)."""
    try:
        x = float(value)
    except OverflowError:
        raise CanonicalizationError(f"{value} does not fit in an IEEE 754 double") from None
    if not math.isfinite(x):
        raise CanonicalizationError(f"{value!r} is not a JSON number")
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr is the shortest decimal that reads back as the same double, as ECMAScript's
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + exponent  # value = 0.digits × 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body
