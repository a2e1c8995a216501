"""docs/settings.md is the settings' own documentation: generated, and checked here."""

from __future__ import annotations

from app.settings_doc import settings_markdown
from app.stack.settings import StackSettings
from streamfit.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "settings.md"


def test_docs_settings_md_is_generated_from_the_settings() -> None:
    assert DOC.read_text() == settings_markdown(), (
        "docs/settings.md is out of date: run `streamfit settings --markdown > docs/settings.md`")


def test_every_setting_has_a_row_and_a_description() -> None:
    text = settings_markdown()
    for name, field in StackSettings.model_fields.items():
        assert f"| `STREAMFIT_{name.upper()}` |" in text
        assert field.description, f"STREAMFIT_{name.upper()} has no description"
