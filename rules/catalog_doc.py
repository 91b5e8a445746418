"""docs/catalog.md, generated from the catalog: ``jiancha catalog export --markdown``.

tests/unit/test_catalog_doc.py fails when the committed file differs from what the catalog
generates, so the table a reader sees is the table the engine uses.
"""

from __future__ import annotations

from .catalog import Catalog, Item

UNIT = {"working": "working days", "calendar": "calendar days"}

HEADER = """\
# Item catalog (事项目录)

Generated from `rules/catalog/*.yaml` by `jiancha catalog export --markdown > docs/catalog.md`;
do not edit by hand (a unit test fails when this file is stale).

Each legal limit is counted as its basis says: **working days** where 行政许可法 sets it or
another text says 工作日 (Art. 82), **calendar days** where a law or regulation says 日 (every day
counts, the start day does not, a last day that is a rest day or holiday moves to the next
working day, 民法典 第二百零三条). Promised limits (承诺时限) are always working days; a
promise without a source beside it is the catalog's estimate, not a published one. An
extension maximum counts in working days: without a basis of its own it is 行政许可法
第四十二条's 10 (15 for joint items); one another law grants in calendar days is held as the
working days those hold in ordinary weeks (5 in 7). A fee may be charged only where
the fee basis names the document that sets it (Art. 58, 59). "Share" is the item's rough
share of a city's daily volume, a weight relative to the other items; the simulator draws
items in proportion to it.

The catalog checks a promise against a calendar-day limit in ordinary weeks (5 working days in
7); across a long holiday a promise may still end after the legal limit, and each limit is
judged on its own.

"""

COLUMNS = ("Code", "Item", "Department", "Legal limit", "Basis", "Promise", "Extension",
           "Fee (CNY)", "Fee basis", "Joint with", "Share", "Verified")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(item: Item, catalog: Catalog) -> list[str]:
    dept = catalog.departments[item.department].name_zh
    extension = f"{item.max_extension_days} ({item.max_extension_basis})"
    return [
        item.code,
        f"{item.name_zh}<br>{item.name_en}",
        dept,
        f"{item.legal_days} {UNIT[item.legal_unit]}",
        item.legal_basis,
        f"{item.promised_days} working days"
        + (f" ({item.promised_source})" if item.promised_source else ""),
        extension,
        "none" if item.fee_standard is None else f"{item.fee_standard:.2f}",
        item.fee_basis or "—",
        ", ".join(item.co_departments) or "—",
        str(item.volume_share),
        "yes" if item.verified else "**no**",
    ]


def catalog_markdown(catalog: Catalog) -> str:
    """The whole of docs/catalog.md for ``catalog``."""
    items = [catalog[c] for c in sorted(catalog)]
    lines = [HEADER.rstrip("\n"), "", "## Items", ""]
    lines.append(f"{len(items)} items in {len(catalog.departments)} departments; "
                 f"{sum(i.legal_unit == 'calendar' for i in items)} counted in calendar days, "
                 f"{sum(i.joint for i in items)} joint (并联审批), "
                 f"{sum(not i.verified for i in items)} not verified.")
    lines.append("")
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for item in items:
        lines.append("| " + " | ".join(_cell(c) for c in _row(item, catalog)) + " |")
    lines += ["", "## Not verified", "",
              "Figures kept as they were or taken from memory where the text could not be "
              "checked; each says why.", ""]
    lines.append("| Code | Item | Reason |")
    lines.append("|---|---|---|")
    for item in items:
        if not item.verified:
            lines.append(f"| {item.code} | {_cell(item.name_zh)} | "
                         f"{_cell(item.verification_note or '')} |")
    return "\n".join(lines) + "\n"
