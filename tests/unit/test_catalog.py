"""The item catalog (rules/catalog/*.yaml), the test catalog and the loader's errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from jiancha.producers.contract import Step
from jiancha.rules.catalog import OPTIONAL_STEPS, Catalog, CatalogError, Item, load_catalog

ROOT = Path(__file__).resolve().parents[2]
REAL_DIR = ROOT / "rules" / "catalog"
FIXTURES = ROOT / "tests" / "fixtures"
TEST_DIR = FIXTURES / "catalog"
BAD_DIR = FIXTURES / "bad_catalogs"

DEPARTMENTS = {
    "gongan": ("公安局", "Public Security Bureau"),
    "gongshang": ("工商行政管理局", "Administration for Industry and Commerce"),
    "shuiwu": ("税务局", "Taxation Bureau"),
    "minzheng": ("民政局", "Civil Affairs Bureau"),
    "huanbao": ("环境保护局", "Environmental Protection Bureau"),
    "weisheng": ("卫生局", "Health Bureau"),
    "zhijian": ("质量技术监督局", "Quality and Technical Supervision Bureau"),
    "yaojian": ("食品药品监督管理局", "Food and Drug Administration"),
    "jianshe": ("建设委员会", "Construction Commission"),
    "guihua": ("规划局", "Urban Planning Bureau"),
    "jiaotong": ("交通委员会", "Transport Commission"),
    "waijingmao": ("对外贸易经济合作局", "Foreign Trade and Economic Cooperation Bureau"),
    "laodong": ("劳动和社会保障局", "Labour and Social Security Bureau"),
    "guotu": ("国土资源和房屋管理局", "Land Resources and Housing Bureau"),
}

FULL_STEPS = ["submitted", "accepted", "reviewed", "decided", "delivered", "completed"]
SIMPLE_STEPS = ["submitted", "accepted", "decided", "delivered", "completed"]

EXPORT_TYPES: dict[str, type | tuple[type, ...]] = {
    "code": str,
    "name_zh": str,
    "name_en": str,
    "department": str,
    "legal_days": int,
    "promised_days": int,
    "steps": list,
    "fee_standard": (str, type(None)),
    "joint": bool,
    "co_departments": list,
    "legal_unit": str,
    "legal_basis": str,
    "promised_source": (str, type(None)),
    "extension_days_max": int,
    "extension_basis": str,
    "fee_basis": (str, type(None)),
    "verified": bool,
    "verification_note": (str, type(None)),
    "volume_share": int,
}
ART_42 = "行政许可法 第四十二条"
FEE_RE = re.compile(r"^\d+\.\d{2}$")


@pytest.fixture(scope="module")
def real() -> Catalog:
    return load_catalog(REAL_DIR)


@pytest.fixture(scope="module")
def test_catalog() -> Catalog:
    return load_catalog(TEST_DIR)


# --- the real catalog -------------------------------------------------------------------


def test_real_catalog_has_the_fourteen_departments(real: Catalog) -> None:
    assert set(real.departments) == set(DEPARTMENTS)
    for code, (name_zh, name_en) in DEPARTMENTS.items():
        dept = real.departments[code]
        assert (dept.name_zh, dept.name_en) == (name_zh, name_en)


def test_real_catalog_file_names_are_department_codes() -> None:
    files = sorted(REAL_DIR.glob("*.yaml"))
    assert {p.stem for p in files} == set(DEPARTMENTS)
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["department"]["code"] == path.stem
        assert all("department" not in raw for raw in doc["items"]), path


def test_every_department_has_at_least_two_items(real: Catalog) -> None:
    assert len(real) >= 60
    per_dept: dict[str, list[Item]] = {d: [] for d in real.departments}
    for item in real.values():
        per_dept[item.department].append(item)
    assert {d: len(items) for d, items in per_dept.items() if len(items) < 2} == {}


def test_item_code_prefix_is_one_per_department(real: Catalog) -> None:
    prefixes: dict[str, set[str]] = {}
    for item in real.values():
        assert re.fullmatch(r"[A-Z]{2}-\d{4}", item.code), item.code
        prefixes.setdefault(item.department, set()).add(item.code.split("-")[0])
    assert all(len(p) == 1 for p in prefixes.values()), prefixes
    flat = [next(iter(p)) for p in prefixes.values()]
    assert len(flat) == len(set(flat)), "two departments share a code prefix"


def test_real_limits_are_plausible(real: Catalog) -> None:
    for item in real.values():
        assert 1 <= item.promised_days <= item.legal_days_as_working, item.code
        if item.joint:
            assert (item.legal_days, item.legal_unit) == (45, "working"), item.code  # Art. 42
            assert item.legal_basis.startswith(ART_42), item.code
        elif item.legal_basis == ART_42:  # the general limit: 20 working days
            assert (item.legal_days, item.legal_unit) == (20, "working"), item.code
        if item.legal_unit == "calendar":  # only another law counts in 日 (Art. 82)
            assert not item.legal_basis.startswith("行政许可法"), item.code
            assert item.legal_days <= 60, item.code
        else:
            assert item.legal_days <= 45, item.code
    assert sum(i.legal_unit == "calendar" for i in real.values()) >= 10


def test_real_items_state_unit_basis_and_verification(real: Catalog) -> None:
    for path in sorted(REAL_DIR.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text(encoding="utf-8"))["items"]:
            assert {"legal_unit", "legal_basis", "verified", "volume_share"} <= set(raw), (
                path, raw["code"])
    for item in real.values():
        assert item.verified == (item.verification_note is None), item.code
        if item.verified:  # checked against the text: the article is named
            assert re.search(r"第[一二三四五六七八九十百]+条", item.legal_basis), item.code
    assert any(i.verified for i in real.values())


# Figures checked against the article each names.
KNOWN_FIGURES = [
    ("HB-0001", 60, "calendar", "环境影响评价法 第二十二条"),  # 报告书: 六十日
    ("HB-0004", 30, "calendar", "环境影响评价法 第二十二条"),  # 报告表: 三十日
    ("GS-0002", 3, "working", "市场主体登记管理条例 第十九条"),
    ("GS-0003", 3, "working", "市场主体登记管理条例 第十九条"),
    ("WS-0002", 45, "calendar", "医疗机构管理条例 第十九条"),
    ("MZ-0001", 60, "calendar", "社会团体登记管理条例 第十二条"),
    ("MZ-0002", 60, "calendar", "民办非企业单位登记管理暂行条例 第十一条"),
    ("GA-0003", 15, "calendar", "护照法 第六条"),
    ("JS-0001", 7, "calendar", "建筑法 第八条"),
    ("GT-0003", 30, "working", "不动产登记暂行条例 第二十条"),
]


@pytest.mark.parametrize(("code", "days", "unit", "basis"), KNOWN_FIGURES,
                         ids=[f[0] for f in KNOWN_FIGURES])
def test_real_known_figures(real: Catalog, code: str, days: int, unit: str, basis: str) -> None:
    item = real[code]
    assert (item.legal_days, item.legal_unit, item.legal_basis) == (days, unit, basis)


def test_real_issue_items(real: Catalog) -> None:
    for code in ("GS-0002", "GS-0003"):  # 3 more working days on extension, not Art. 42's 10
        assert real[code].max_extension_days == 3
        assert real[code].max_extension_basis.startswith("市场主体登记管理条例 第十九条")
    passport = real["GA-0003"]
    assert passport.fee_standard == Decimal("120.00")  # not 200 since 2019
    assert passport.max_extension_days == 10  # 护照法 第六条: 15 more 日, in working days
    food = [i for i in real.values() if i.name_zh == "食品经营许可"]
    assert len(food) == 1 and food[0].department == "yaojian"


def test_real_steps_are_required_steps_only(real: Catalog) -> None:
    for item in real.values():
        steps = [s.value for s in item.steps]
        assert steps in (FULL_STEPS, SIMPLE_STEPS), item.code
        assert not set(item.steps) & OPTIONAL_STEPS
    assert any([s.value for s in i.steps] == SIMPLE_STEPS for i in real.values())


def test_real_catalog_has_joint_items(real: Catalog) -> None:
    joint = [i for i in real.values() if i.joint]
    assert len(joint) >= 6
    for item in joint:
        assert item.legal_days == 45
        assert item.promised_days <= 45
        assert 2 <= len(item.co_departments) <= 4, item.code
        assert len(set(item.co_departments)) == len(item.co_departments)
        assert item.department not in item.co_departments
        assert set(item.co_departments) <= set(real.departments)
        assert [s.value for s in item.steps] == FULL_STEPS
        assert item.max_extension_days == 15
    for item in real.values():
        if not item.joint:
            assert item.co_departments == ()
            if item.extension_days_max is None:
                assert item.max_extension_days == 10
                assert item.max_extension_basis == ART_42
            else:  # another law's extension, named
                assert item.extension_basis is not None
                assert item.max_extension_basis != ART_42, item.code


def test_real_fees_are_rare_and_well_formed(real: Catalog) -> None:
    fees = [i for i in real.values() if i.fee_standard is not None]
    assert len(fees) < len(real) / 4  # Art. 58: no fee unless a law provides one
    for item in fees:
        assert item.fee_standard is not None and item.fee_standard > 0
        assert item.fee_basis, item.code
    assert all(i.fee_basis is None for i in real.values() if i.fee_standard is None)


def _check_export(objs: list[dict]) -> None:
    assert [o["code"] for o in objs] == sorted(o["code"] for o in objs)
    for obj in objs:
        assert set(obj) == set(EXPORT_TYPES), obj.get("code")
        for key, typ in EXPORT_TYPES.items():
            assert isinstance(obj[key], typ), (obj["code"], key)
        assert not isinstance(obj["legal_days"], bool)
        assert not isinstance(obj["promised_days"], bool)
        assert all(isinstance(s, str) and Step(s) for s in obj["steps"])
        assert all(isinstance(d, str) for d in obj["co_departments"])
        fee = obj["fee_standard"]
        assert fee is None or FEE_RE.match(fee), (obj["code"], fee)
    assert json.loads(json.dumps(objs, ensure_ascii=False)) == objs


def test_real_export_matches_contract(real: Catalog) -> None:
    objs = real.export()
    assert len(objs) == len(real)
    _check_export(objs)
    by_code = {o["code"]: o for o in objs}
    assert by_code["GA-0001"]["fee_standard"] == "10.00"
    assert by_code["GA-0002"]["fee_standard"] is None


# --- the test catalog -------------------------------------------------------------------


def test_test_catalog_loads(test_catalog: Catalog) -> None:
    assert set(test_catalog.departments) == {"gongan", "gongshang", "jianshe"}
    assert set(test_catalog) == {"T-SHORT", "T-FEE", "T-JOINT", "T-SIMPLE"}
    _check_export(test_catalog.export())


def test_test_catalog_items(test_catalog: Catalog) -> None:
    short = test_catalog["T-SHORT"]
    assert (short.department, short.legal_days, short.promised_days) == ("gongan", 2, 1)
    assert [s.value for s in short.steps] == FULL_STEPS

    fee = test_catalog["T-FEE"]
    assert fee.department == "gongshang"
    assert fee.fee_standard == Decimal("50.00")
    assert fee.export()["fee_standard"] == "50.00"

    joint = test_catalog["T-JOINT"]
    assert joint.department == "jianshe" and joint.joint
    assert joint.co_departments == ("gongan", "gongshang")
    assert (joint.legal_days, joint.promised_days) == (45, 30)
    assert joint.max_extension_days == 15

    simple = test_catalog["T-SIMPLE"]
    assert simple.department == "gongan"
    assert (simple.legal_days, simple.promised_days) == (20, 10)
    assert Step.reviewed not in simple.steps
    assert [s.value for s in simple.steps] == SIMPLE_STEPS

    for code in ("T-SHORT", "T-SIMPLE", "T-JOINT"):
        assert test_catalog[code].fee_standard is None


# --- bad catalogs -------------------------------------------------------------------------

# case directory, file that must be named, then the other strings the message must contain
BAD_CASES = [
    ("promised_over_legal", "gongan.yaml", ["B-PROMISE", "promised_days", "legal_days"]),
    ("unknown_step", "gongan.yaml", ["B-UNKNOWN", "steps", "approved"]),
    ("optional_step", "gongan.yaml", ["B-OPTIONAL", "steps", "supplement_requested"]),
    ("joint_without_co", "jianshe.yaml", ["B-JOINT", "co_departments"]),
    ("co_department_no_file", "jianshe.yaml", ["B-CO", "co_departments", "guihua"]),
    ("duplicate_code", "gongshang.yaml", ["B-DUP", "code", "gongan.yaml"]),
    ("malformed_yaml", "gongan.yaml", ["not valid YAML", "line 9"]),
    ("missing_name_zh", "gongan.yaml", ["B-NONAME", "name_zh", "Field required"]),
    ("negative_fee", "gongshang.yaml", ["B-FEE", "fee_standard", "negative"]),
    ("missing_legal_basis", "huanbao.yaml", ["B-NOBASIS", "legal_basis", "Field required"]),
]


@pytest.mark.parametrize(("case", "filename", "parts"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_catalog_fails_naming_file_item_and_field(
    case: str, filename: str, parts: list[str]
) -> None:
    directory = BAD_DIR / case
    path = directory / filename
    assert path.is_file()
    with pytest.raises(CatalogError, match=re.escape(f"{path}: ")) as info:
        load_catalog(directory)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_every_bad_case_directory_is_tested() -> None:
    assert {p.name for p in BAD_DIR.iterdir() if p.is_dir()} == {c[0] for c in BAD_CASES}


# Smaller cases generated in tmp_path.

GA_DEPT = "department: {code: gongan, name_zh: 公安局, name_en: Public Security Bureau}\n"


def _item(code: str | None = "B-X", **fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "code": code,
        "name_zh": "测试",
        "name_en": "Test",
        "legal_days": 20,
        "legal_unit": "working",
        "legal_basis": ART_42,
        "promised_days": 10,
        "steps": list(FULL_STEPS),
        "verified": True,
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def _write(tmp_path: Path, *items: dict[str, object]) -> Path:
    doc = yaml.safe_load(GA_DEPT) | {"items": list(items)}
    path = tmp_path / "gongan.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fields", "field", "detail"),
    [
        ({"fee_standard": "10.005"}, "fee_standard", "decimal places"),
        ({"fee_standard": "abc"}, "fee_standard", "abc"),
        ({"legal_days": 0}, "legal_days", "greater than or equal to 1"),
        ({"promised_days": "soon"}, "promised_days", "soon"),
        ({"steps": ["accepted", "decided"]}, "steps", "submitted"),
        ({"steps": ["submitted", "accepted", "accepted"]}, "steps", "repeat"),
        ({"steps": []}, "steps", "submitted"),
        ({"co_departments": ["gongshang"]}, "co_departments", "joint"),
        ({"joint": True, "co_departments": ["gongan"]}, "co_departments", "handling department"),
        ({"deadline": 3}, "deadline", "Extra inputs"),
        ({"name_en": ""}, "name_en", "at least 1 character"),
        ({"legal_basis": "  "}, "legal_basis", "at least 1 character"),
        ({"legal_unit": "hours"}, "legal_unit", "calendar"),
        ({"fee_standard": "10.00"}, "fee_basis", "document that sets it"),
        ({"fee_basis": "某收费文件"}, "fee_basis", "only for an item with a fee_standard"),
        ({"extension_days_max": 3}, "extension_basis", "article that sets it"),
        ({"verified": False}, "verification_note", "says why"),
        # 14 calendar days hold 10 working days of ordinary weeks; a promise of 11 cannot fit
        ({"legal_unit": "calendar", "legal_days": 14, "promised_days": 11}, "promised_days",
         "at most 10 working days"),
    ],
)
def test_bad_item_field(tmp_path: Path, fields: dict[str, object], field: str, detail: str) -> None:
    path = _write(tmp_path, _item("B-FIELD", **fields))
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path)
    message = str(info.value)
    for part in (str(path), "B-FIELD", field, detail):
        assert part in message, f"{part!r} not in {message!r}"


def test_item_without_code_is_named_by_position(tmp_path: Path) -> None:
    path = _write(tmp_path, _item("B-1"), _item(None))
    with pytest.raises(CatalogError, match=re.escape(f"{path}: item #1: code: Field required")):
        load_catalog(tmp_path)


def test_item_with_unknown_department(tmp_path: Path) -> None:
    path = _write(tmp_path, _item("B-DEPT", department="nowhere"))
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path)
    message = str(info.value)
    for part in (str(path), "B-DEPT", "department", "nowhere"):
        assert part in message


def test_department_defined_twice(tmp_path: Path) -> None:
    _write(tmp_path, _item("B-1"))
    other = tmp_path / "gongan2.yaml"
    other.write_text(GA_DEPT + "items: []\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(f"{other}: department 'gongan'")):
        load_catalog(tmp_path)


def test_department_missing_name_zh(tmp_path: Path) -> None:
    path = tmp_path / "gongan.yaml"
    path.write_text("department: {code: gongan, name_en: Police}\nitems: []\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(f"{path}: department: name_zh")):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("- just\n- a list\n", "expected a mapping"),
        (GA_DEPT + "items: {code: B-1}\n", "'items' must be a list"),
        (GA_DEPT + "items: [B-1]\n", "items[0] must be a mapping"),
    ],
)
def test_bad_file_shape(tmp_path: Path, text: str, detail: str) -> None:
    path = tmp_path / "gongan.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(f"{path}: {detail}")):
        load_catalog(tmp_path)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not a directory"):
        load_catalog(tmp_path / "absent")
    with pytest.raises(CatalogError, match=r"no \*\.yaml"):
        load_catalog(tmp_path)


def test_calendar_limit_allows_a_promise_that_fits_ordinary_weeks(tmp_path: Path) -> None:
    _write(tmp_path, _item("B-CAL", legal_unit="calendar", legal_days=14, promised_days=10),
           _item("B-CAL60", legal_unit="calendar", legal_days=60, promised_days=42))
    catalog = load_catalog(tmp_path)
    assert catalog["B-CAL"].legal_days_as_working == 10
    assert catalog["B-CAL60"].legal_days_as_working == 42
    assert catalog["B-CAL"].export()["legal_unit"] == "calendar"


def test_unverified_item_exports_its_reason(tmp_path: Path) -> None:
    _write(tmp_path, _item("B-UNV", verified=False, verification_note="条文未核对"))
    exported = load_catalog(tmp_path)["B-UNV"].export()
    assert (exported["verified"], exported["verification_note"]) == (False, "条文未核对")


def test_yaml_float_fee_exports_two_places(tmp_path: Path) -> None:
    _write(tmp_path, _item("B-FLOAT", fee_standard=12.5, fee_basis="某收费文件"))
    assert load_catalog(tmp_path)["B-FLOAT"].export()["fee_standard"] == "12.50"
