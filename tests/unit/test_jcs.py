"""RFC 8785 (JCS) canonical JSON, checked against the RFC's own examples."""

from __future__ import annotations

import json
import struct
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiancha.producers.jcs import CanonicalizationError, canonicalize, number
from jiancha.settings import DEFAULT_CATALOG_DIR
from jiancha.simulator import generate_cases

START = datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text
APPENDIX_B = [
    ("0000000000000000", "0"), ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"), ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"), ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"), ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_as_in_appendix_b(bits: str, text: str) -> None:
    assert number(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_have_no_canonical_form(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize([struct.unpack(">d", bytes.fromhex(bits))[0]])


def test_the_example_of_section_3_2_2() -> None:
    source = r'''{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }'''
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonicalize(json.loads(source)) == expected.encode()


def test_the_sorting_example_of_section_3_2_3() -> None:
    source = r'''{
      "\u20ac": "Euro Sign", "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }'''
    keys = list(json.loads(canonicalize(json.loads(source))))
    # UTF-16 code units: the emoji (a surrogate pair, 0xD83D…) before U+FB33
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_integers_are_doubles_and_large_ones_round() -> None:
    assert canonicalize([1, -0, 1.0, 10**21, 2**53 + 1, -(10**15)]) == (
        b"[1,0,1,1e+21,9007199254740992,-1000000000000000]")
    with pytest.raises(CanonicalizationError):
        canonicalize(10**400)


def test_strings_only_minimal_escapes_and_utf8() -> None:
    assert canonicalize("\x00\x1f\x7f\u2028é\U0001f600\t") == (
        '"\\u0000\\u001f\x7f\u2028é\U0001f600\\t"'.encode())
    with pytest.raises(CanonicalizationError):
        canonicalize("\ud800")  # a lone surrogate is no Unicode text


# --- signatures over sorted-key JSON ---------------------------------------------------
# Producers may sign orjson's sorted output instead of JCS. On what the contract's fields hold
# (text, integers, booleans, null, objects and arrays of them: amounts are strings, days
# integers) both write the same bytes, so those signatures stay valid (docs/contract.md, Signing).

bmp_text = st.text(alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                   max_size=12)
contract_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | bmp_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(bmp_text, inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(contract_values)
def test_orjson_sorted_output_is_jcs_on_contract_values(value: object) -> None:
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == canonicalize(value)


def test_orjson_sorted_output_is_jcs_on_simulated_events() -> None:
    events = [e.wire_dict() for e in generate_cases(DEFAULT_CATALOG_DIR, cases=200, seed=7,
                                                     violations=0.5, start=START)]
    assert len({e["step"] for e in events}) >= 10
    for e in events:
        assert orjson.dumps(e, option=orjson.OPT_SORT_KEYS) == canonicalize(e)
