"""docs/data-format.md is exactly what the entity definitions render to."""

from __future__ import annotations

from pathlib import Path

from nextoffer.ingest.entities import ENTITIES
from nextoffer.ingest.format_doc import render_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-format.md"


def test_doc_is_in_sync_with_entities() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "regenerate: python -m nextoffer.ingest.format_doc > docs/data-format.md"
    )


def test_doc_lists_every_column_of_every_entity() -> None:
    text = render_markdown()
    for entity in ENTITIES:
        assert f"## {entity.name}" in text
        for column in entity.columns:
            assert f"| `{column.name}` |" in text
