"""Node packages that a test drives, installed once with npm ci."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def npm_ci(folder: Path, installed: Path) -> None:
    """`npm ci` in `folder` (its package-lock.json pins everything) unless `installed` exists."""
    if not installed.exists():
        npm = shutil.which("npm")
        assert npm is not None, f"npm (Node 20 or later) is needed to install {folder}"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=600)
