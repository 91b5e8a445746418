"""docs/catalog.md is generated from the catalog and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jiancha.rules.catalog import load_catalog
from jiancha.rules.catalog_doc import catalog_markdown

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "catalog.md"
CATALOG = load_catalog(ROOT / "rules" / "catalog")
REGENERATE = "jiancha catalog export --markdown > docs/catalog.md"


def test_docs_catalog_is_generated_from_the_catalog() -> None:
    assert DOC.read_text(encoding="utf-8") == catalog_markdown(CATALOG), (
        f"docs/catalog.md is stale: run `{REGENERATE}`")


def test_every_item_has_a_row_and_every_unverified_item_a_reason() -> None:
    text = DOC.read_text(encoding="utf-8")
    table, unverified = text.split("## Not verified")
    for item in CATALOG.values():
        row = next(line for line in table.splitlines() if line.startswith(f"| {item.code} |"))
        assert item.legal_basis in row and f"{item.legal_days} {item.legal_unit}" in row
        assert ("| yes |" in row) == item.verified
        assert (f"| {item.code} |" in unverified) == (not item.verified)
        if not item.verified:
            assert item.verification_note is not None
            assert item.verification_note.replace("|", "\\|") in unverified


def test_cli_prints_the_same_markdown() -> None:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "catalog", "export",
                          "--markdown"], capture_output=True, check=True, cwd=ROOT)
    assert out.stdout.decode("utf-8") == catalog_markdown(CATALOG)


def test_markdown_follows_the_catalog(tmp_path: Path) -> None:
    # a changed figure changes the document, so the staleness test above can fail
    for path in (ROOT / "rules" / "catalog").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if path.stem == "huanbao":
            text = text.replace("legal_days: 60", "legal_days: 59")
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    changed = catalog_markdown(load_catalog(tmp_path))
    row = next(line for line in changed.splitlines() if line.startswith("| HB-0001 |"))
    assert "| 59 calendar days |" in row
    assert changed != catalog_markdown(CATALOG)
