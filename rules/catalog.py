"""The item catalog (事项目录): one YAML file per department under ``rules/catalog/``.

Loaded and validated by pydantic; a bad file fails with :class:`CatalogError` naming the
file, the item and the field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from jiancha.producers.contract import Step

#: Steps that may happen on any item and are never "unknown" (domain.md).
OPTIONAL_STEPS: frozenset[Step] = frozenset(
    {
        Step.supplement_requested,
        Step.supplement_received,
        Step.rejected_at_intake,
        Step.suspended,
        Step.resumed,
        Step.extended,
        Step.withdrawn,
        Step.fee_charged,
    }
)

M = TypeVar("M", bound=BaseModel)

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class CatalogError(ValueError):
    """The catalog cannot be loaded; the message names file, item and field."""


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class Item(BaseModel):
    """One approval item (事项): its legal limit (working or calendar days) and the article
    that sets it, its promised limit (working days), its fee and the document behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    department: Code
    legal_days: int = Field(ge=1, le=365)
    #: how ``legal_days`` is counted: working days (行政许可法 Art. 82) or calendar days (日,
    #: where another law sets the limit); promised limits are always working days
    legal_unit: Literal["working", "calendar"] = "working"
    #: the law or regulation and article that set ``legal_days`` (e.g. "环境影响评价法 第二十二条")
    legal_basis: Text
    promised_days: int = Field(ge=1, le=365)
    #: where the promise (承诺时限) is published, when known
    promised_source: Text | None = None
    steps: tuple[Step, ...]
    fee_standard: Decimal | None = Field(
        None,
        decimal_places=2,
        description="CNY standard, at most 2 decimal places; null when nothing may be charged",
    )
    #: the document that sets ``fee_standard`` (Art. 58: a law or administrative regulation,
    #: priced by the State's fee document); null when nothing may be charged
    fee_basis: Text | None = None
    joint: bool = False
    co_departments: tuple[Code, ...] = ()
    extension_days_max: int | None = Field(
        None, ge=1, le=60,
        description="working days; defaults to 10 (15 for joint items), Art. 42",
    )
    #: what sets ``extension_days_max`` when it is not Art. 42's default; an extension counts
    #: in working days, so one another law grants in calendar days is held as the working days
    #: those hold in ordinary weeks (5 in 7), and the basis says so
    extension_basis: Text | None = None
    #: every figure checked against the text of its basis; otherwise the note says what is not
    verified: bool = False
    verification_note: Text | None = None
    #: the item's rough share of a city's daily volume, as a weight relative to the other
    #: items (an identity card 1500, an environmental impact report 10); the simulator draws
    #: items in proportion to it
    volume_share: int = Field(1, ge=1, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> Item:
        if self.promised_days > self.legal_days_as_working:
            unit = "" if self.legal_unit == "working" else (
                f" calendar days, at most {self.legal_days_as_working} working days")
            raise ValueError(
                f"promised_days ({self.promised_days}) must not exceed legal_days "
                f"({self.legal_days}{unit})"
            )
        if not self.steps or self.steps[0] is not Step.submitted:
            raise ValueError("steps must start with 'submitted'")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError("steps must not repeat a step")
        optional = [s.value for s in self.steps if s in OPTIONAL_STEPS]
        if optional:
            raise ValueError(f"steps lists optional steps {optional}: they may happen on any item")
        if self.joint and not self.co_departments:
            raise ValueError("a joint item (joint: true) needs co_departments")
        if not self.joint and self.co_departments:
            raise ValueError("co_departments are only for joint items (joint: true)")
        if self.department in self.co_departments:
            raise ValueError("co_departments must not include the handling department")
        if self.fee_standard is not None and self.fee_standard < 0:
            raise ValueError("fee_standard must not be negative")
        if self.fee_standard is not None and self.fee_basis is None:
            raise ValueError("fee_basis: an item with a fee_standard needs the document that "
                             "sets it (Art. 58)")
        if self.fee_standard is None and self.fee_basis is not None:
            raise ValueError("fee_basis is only for an item with a fee_standard")
        if self.extension_days_max is not None and self.extension_basis is None:
            raise ValueError("extension_basis: an extension maximum other than Art. 42's "
                             "default needs the article that sets it")
        if not self.verified and self.verification_note is None:
            raise ValueError("verification_note: an item not verified (verified: false) says why")
        return self

    @property
    def legal_days_as_working(self) -> int:
        """The legal limit in working days of ordinary weeks (5 in 7): a promise, always in
        working days, longer than this outruns a calendar-day limit without any holiday.
        Across a long holiday a shorter promise may still end after the legal limit (and a
        调休 week may hold a longer one); each limit is judged on its own, so the catalog
        refuses only a promise that does not fit ordinary weeks."""
        if self.legal_unit == "working":
            return self.legal_days
        return max(1, self.legal_days * 5 // 7)

    @property
    def max_extension_days(self) -> int:
        if self.extension_days_max is not None:
            return self.extension_days_max
        return 15 if self.joint else 10

    @property
    def max_extension_basis(self) -> str:
        if self.extension_basis is not None:
            return self.extension_basis
        return "行政许可法 第四十二条"

    def export(self) -> dict[str, Any]:
        """The object ``jiancha catalog export --json`` prints (contract.md)."""
        return {
            "code": self.code,
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "department": self.department,
            "legal_days": self.legal_days,
            "legal_unit": self.legal_unit,
            "promised_days": self.promised_days,
            "steps": [s.value for s in self.steps],
            "fee_standard": None if self.fee_standard is None else f"{self.fee_standard:.2f}",
            "joint": self.joint,
            "co_departments": list(self.co_departments),
            "legal_basis": self.legal_basis,
            "promised_source": self.promised_source,
            "extension_days_max": self.max_extension_days,
            "extension_basis": self.max_extension_basis,
            "fee_basis": self.fee_basis,
            "verified": self.verified,
            "verification_note": self.verification_note,
            "volume_share": self.volume_share,
        }


class Catalog(Mapping[str, Item]):
    """Items by code, plus the departments they belong to."""

    def __init__(self, items: Mapping[str, Item], departments: Mapping[str, Department]) -> None:
        self._items = dict(items)
        self.departments = dict(departments)

    def __getitem__(self, code: str) -> Item:
        return self._items[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def export(self) -> list[dict[str, Any]]:
        return [self._items[c].export() for c in sorted(self._items)]


def load_catalog(directory: Path | str) -> Catalog:
    """Load every ``*.yaml`` in ``directory``.

    File layout::

        department: {code: gongan, name_zh: 公安局, name_en: Public Security Bureau}
        items:
          - code: GA-0001
            name_zh: …
            …            # Item fields; ``department`` defaults to the file's department
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(f"{directory}: not a directory of catalog YAML files")
    items: dict[str, Item] = {}
    sources: dict[str, Path] = {}
    departments: dict[str, Department] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CatalogError(f"{directory}: no *.yaml catalog files")
    for path in files:
        doc = _read_yaml(path)
        dept = _validate(Department, doc.get("department"), path, "department")
        if dept.code in departments:
            raise CatalogError(f"{path}: department {dept.code!r} is defined in another file too")
        departments[dept.code] = dept
        raw_items = doc.get("items", [])
        if not isinstance(raw_items, list):
            raise CatalogError(f"{path}: 'items' must be a list")
        for n, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                raise CatalogError(f"{path}: items[{n}] must be a mapping")
            raw = {"department": dept.code, **raw}
            label = f"item {raw.get('code', f'#{n}')!s}"
            item = _validate(Item, raw, path, label)
            if item.code in items:
                raise CatalogError(
                    f"{path}: {label}: code: already used by an item in {sources[item.code]}"
                )
            items[item.code] = item
            sources[item.code] = path
    for item in items.values():
        fields = [("department", item.department)]
        fields += [("co_departments", d) for d in item.co_departments]
        for field, d in fields:
            if d not in departments:
                raise CatalogError(
                    f"{sources[item.code]}: item {item.code}: {field}: department {d!r} has no "
                    f"catalog file in {directory} (known: {', '.join(sorted(departments))})"
                )
    return Catalog(items, departments)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"{path}: expected a mapping with 'department' and 'items'")
    return doc


def _validate(model: type[M], raw: Any, path: Path, label: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(str(p) for p in e["loc"]), _message(e))))
            for e in exc.errors()
        )
        raise CatalogError(f"{path}: {label}: {problems}") from None


def _message(error: Any) -> str:
    msg: str = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if (
        error["loc"]
        and isinstance(value, str | int | float | Decimal)
        and error["type"] != "missing"
    ):
        msg += f" (got {value!r})"
    return msg
