"""`.env.example` lists every setting with its default, and reads back as the defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

from shared.settings import Settings
from taskgate.env_example import render

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "uv run python -m taskgate.env_example > .env.example"


def test_env_example_matches_the_settings_class() -> None:
    written = (ROOT / ".env.example").read_text()
    assert written == render(), f".env.example is out of date with shared/settings.py: {REGENERATE}"


def test_every_setting_is_listed_once() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [
        line.removeprefix("# ").split("=", 1)[0]
        for line in lines
        if "=" in line and line.removeprefix("# ").split("=", 1)[0].isupper()
    ]
    assert sorted(names) == sorted(name.upper() for name in Settings.model_fields)


def test_a_copy_of_env_example_as_env_gives_the_defaults(tmp_path: Path) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    from_file = Settings(_env_file=tmp_path / ".env")
    defaults = Settings(_env_file=None)
    assert from_file.model_dump() == defaults.model_dump()
