"""docs/configuration.md names every setting once, with its meaning, as in shared/settings.py."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings
from taskgate.configuration_doc import REGENERATE, render, undocumented

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_meaning_and_none_is_named_twice() -> None:
    assert undocumented() == [], "add a meaning to taskgate/configuration_doc.py SECTIONS"


def test_configuration_page_matches_the_settings_class() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == render(), f"docs/configuration.md is out of date: {REGENERATE}"


def test_configuration_page_has_one_row_per_setting() -> None:
    rows = [
        line.split("|")[1].strip().strip("`")
        for line in (ROOT / "docs" / "configuration.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    settings = [name.upper() for name in Settings.model_fields]
    assert sorted(row for row in rows if row in settings) == sorted(settings)
