"""`.env.example`: every setting of shared/settings.py with its default, generated from the class.

Regenerate after adding a setting: `uv run python -m taskgate.env_example > .env.example`
(a test fails, saying so, while the file and the class differ).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from shared.settings import Settings

HEADER = """\
# Every taskgate setting, with its default. Copy to .env (read by every taskgate process) and
# change what you need; environment variables override .env. Meanings: docs/configuration.md.
# Generated: uv run python -m taskgate.env_example > .env.example
"""


def setting_value(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, SecretStr):
        return default.get_secret_value()
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list | dict):
        return json.dumps(default)  # pydantic-settings reads complex values as JSON
    return str(default)


def render() -> str:
    lines = [HEADER]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        # Unset by default: commented out, because an empty value would set it to "".
        unset = "# " if default is None else ""
        lines.append(f"{unset}{name.upper()}={setting_value(default)}\n")
    return "".join(lines)


if __name__ == "__main__":
    print(render(), end="")
