"""`.taskgate/dev.env`: every value a person or a client needs from a running `taskgate dev`.

`taskgate dev` writes it (mode 0600, KEY=value lines) in the folder it was started from, and
removes it when it stops; `taskgate cache ...` and the stdio bridge read it, and use the URLs
written in it over whatever the shell exports. One stack runs per folder: it holds a lock on
`.taskgate/dev.lock` (flock, released by the kernel however the process ends), and only the
holder writes or removes dev.env.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

DEV_DIR = ".taskgate"
DEV_ENV = "dev.env"
DEV_LOCK = "dev.lock"
ADMIN_URL_KEY = "TASKGATE_ADMIN_URL"


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


def dev_admin_url(values: Mapping[str, str], mcp_path: str = "/mcp") -> str | None:
    """The admin API dev.env names: TASKGATE_ADMIN_URL, else the first gateway's origin."""
    if values.get(ADMIN_URL_KEY):
        return values[ADMIN_URL_KEY]
    if values.get("MCP_URL"):
        return values["MCP_URL"].removesuffix(mcp_path)
    return None


class StackRunning(Exception):
    """Another `taskgate dev` holds this folder; the message names its URL."""


class DevFolderLock:
    """The one-stack-per-folder lock: an flock on `.taskgate/dev.lock` holding the owner's URL.

    The kernel drops an flock when its holder's last descriptor closes, so a killed stack
    never leaves the folder locked; the descriptor is not inherited by the stack's children.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, url: str) -> None:
        """Take the lock and record `url` in it, or raise StackRunning naming the holder's."""
        if self._fd is not None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / DEV_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = os.read(fd, 4096).decode(errors="replace").strip() or "its URL unknown"
            os.close(fd)
            raise StackRunning(
                f"a stack already runs from this folder ({running}); stop it first, or start "
                "in another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, url.encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
