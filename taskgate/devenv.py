"""`.taskgate/dev.env`: every value a person or a client needs from a running `taskgate dev`.

`taskgate dev` writes it (mode 0600, KEY=value lines, rewritten on each start) in the folder
it was started from; `taskgate cache ...` and the stdio bridge read it when no other settings
are given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

DEV_DIR = ".taskgate"
DEV_ENV = "dev.env"


def dev_dir(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / DEV_DIR


def dev_env_path(cwd: Path | None = None) -> Path:
    return dev_dir(cwd) / DEV_ENV


def write_dev_env(path: Path, values: Mapping[str, str]) -> None:
    """Write KEY=value lines readable by the owner only, replacing any earlier file at once."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = "".join(f"{key}={_checked(key, value)}\n" for key, value in values.items())
    partial = path.with_name(path.name + ".partial")
    # Created 0600 before any secret is written, so no other user can open it meanwhile.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(lines)
    os.chmod(partial, 0o600)  # an earlier partial file may have had other bits
    partial.replace(path)


def read_dev_env(path: Path | None = None) -> dict[str, str]:
    """The file's values, or {} when there is none."""
    path = path or dev_env_path()
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def mcp_urls(values: Mapping[str, str]) -> list[str]:
    """MCP_URL, MCP_URL_2, ... in order."""
    urls = [values["MCP_URL"]] if "MCP_URL" in values else []
    index = 2
    while f"MCP_URL_{index}" in values:
        urls.append(values[f"MCP_URL_{index}"])
        index += 1
    return urls


def _checked(key: str, value: str) -> str:
    # Every value is generated (URLs, url-safe tokens), so no quoting is needed, and a shell's
    # `set -a; . .taskgate/dev.env` reads the file as dotenv does.
    if not value or not all(c.isalnum() or c in _PLAIN for c in value):
        raise ValueError(f"{key}: dev.env values must be plain URL or token characters")
    return value


_PLAIN = "-_.:/@,+=%~"
