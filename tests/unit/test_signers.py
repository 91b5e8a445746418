"""Departments sign in their own language: the gate verifies events signed by Node's crypto
over the npm package ``canonicalize`` (RFC 8785) and by Python's stdlib ``json`` with a
hand-written JCS dump, with numbers (1.0, 1e21, -0, 0.1, 1e-7) and non-ASCII text."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from jiancha.producers.contract import canonical_bytes
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.factory import build_engine
from jiancha.rules.ingest import Gate, Rejected
from tests.events import event
from tests.integration.conftest import TEST_CATALOG

NODE_SIGNER = Path(__file__).resolve().parents[1] / "node"
ENGINE = build_engine(TEST_CATALOG)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = "gongan-密钥"
GATE = Gate(ENGINE.catalog, DepartmentKeys.from_mapping({"gongan": KEY}))

#: what other serializers write differently from orjson: integral floats, exponents, -0,
#: keys beyond the BMP (UTF-16 order puts U+1F600 before U+E000), text in every script
ODD = {"one": 1.0, "big": 1e21, "minus_zero": -0.0, "tenth": 0.1, "small": 1e-7,
       "huge": 1.5e300, "third": 1 / 3, "name": "公安局 Ünïcødé \u2028 😀",
       "\U0001f600": "emoji key", "\ue000": "private-use key", "list": [1.0, -0.0, 2.5e-8]}


def _events() -> list[dict[str, Any]]:
    submitted = event("C-SIGN", "submitted", "2026-11-30 09:00")
    decided = event("C-SIGN", "decided", "2026-11-30 10:00", outcome="grant",
                    reason="准予许可 \"quoted\" \\ \t", **ODD)
    decided["note"] = {"score": 99.5, "ratio": 1.0, "zero": -0.0, "text": "ß→😀"}
    return [submitted, decided]


def _accepted(line: bytes) -> None:
    try:
        GATE.parse(line, NOW)
    except Rejected as r:
        raise AssertionError(f"{r.reason}: {r.detail}\n{line.decode()}") from None


def test_events_signed_by_node_crypto_and_npm_canonicalize_verify() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is missing: apt-get install nodejs npm (bash .ci/install-tools does)")
    if not (NODE_SIGNER / "node_modules" / "canonicalize").is_dir():
        pytest.skip("the npm package canonicalize is missing in tests/node: "
                    "npm ci --prefix tests/node (bash .ci/install-tools does)")
    batch = [{"key": KEY, "event": e} for e in _events()]
    out = subprocess.run([node, str(NODE_SIGNER / "sign.mjs")], input=json.dumps(batch),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.encode().splitlines()
    assert len(lines) == 2
    for line in lines:
        _accepted(line)
    # the wire is JavaScript's (1e+21, 1e-7): a JCS verifier reads it as the same numbers
    assert b"1e+21" in lines[1] and b"1e-7" in lines[1]
    tampered = orjson.loads(lines[1])
    tampered["attributes"]["tenth"] = 0.10000000000000002
    with pytest.raises(Rejected, match="bad_signature"):
        GATE.parse(orjson.dumps(tampered), NOW)


# --- a department signing with Python's stdlib json only ------------------------------


def _es_number(x: float) -> str:
    """ECMAScript's Number::toString from repr (shortest digits): the exponent forms move
    to 1e21 and 1e-7, 'e+NN' with a sign and no leading zeros, integral values bare."""
    if x == 0:
        return "0"
    if math.isinf(x) or math.isnan(x):
        raise ValueError(x)
    sign, text = ("-", repr(-x)) if x < 0 else ("", repr(x))
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + exp - (len(whole + frac) - len((whole + frac).lstrip("0")))
    digits = digits.rstrip("0")
    if len(digits) <= point <= 21:
        body = digits + "0" * (point - len(digits))
    elif 0 < point <= 21:
        body = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        body = "0." + "0" * -point + digits
    else:
        lead = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        body = f"{lead}e{point - 1:+d}"
    return sign + body


def _stdlib_jcs(value: Any) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: [ord(u) for u in k.encode("utf-16-be").decode(
            "latin-1")])
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _stdlib_jcs(value[k])
                              for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_stdlib_jcs(v) for v in value) + "]"
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return _es_number(float(value))
    return json.dumps(value, ensure_ascii=False)


def test_events_signed_with_stdlib_json_verify() -> None:
    for e in _events():
        body = _stdlib_jcs({k: v for k, v in e.items() if k != "signature"}).encode("utf-8")
        assert body == canonical_bytes(e)
        e["signature"] = hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
        # and on the wire as the stdlib writes it: 1.0, 1e+21, -0.0, \u escapes
        _accepted(json.dumps(e).encode())
        _accepted(json.dumps(e, ensure_ascii=False, indent=2).encode())


@pytest.mark.parametrize(("x", "text"), [(1.0, "1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
                                         (-0.0, "0"), (1e-7, "1e-7"), (1.5e-6, "0.0000015"),
                                         (123.456, "123.456"), (5e-324, "5e-324")])
def test_the_stdlib_signers_numbers(x: float, text: str) -> None:
    assert _es_number(x) == text
