"""Where `taskgate connect` keeps its OAuth tokens and client registration: one JSON file,
mode 0600 in a 0700 folder, one entry per gateway URL, replaced atomically on each change.

A refresh token is a long-lived credential, so the file is never readable by other users,
not even for the moment between creating and renaming it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)


def default_tokens_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "taskgate" / "tokens.json"


class FileTokenStorage:
    """The SDK's TokenStorage protocol, on a 0600 file shared by every gateway URL."""

    def __init__(self, path: Path, server_url: str) -> None:
        self.path = path
        self.server_url = server_url

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _entry(self) -> dict[str, Any]:
        entry = self._read_all().get(self.server_url)
        return entry if isinstance(entry, dict) else {}

    def _write_entry(self, key: str, value: dict[str, Any] | None) -> None:
        """Set one key of this URL's entry (None removes it), replacing the file at once."""
        data = self._read_all()
        entry = data.get(self.server_url)
        updated = {**(entry if isinstance(entry, dict) else {}), key: value}
        data[self.server_url] = {k: v for k, v in updated.items() if v is not None}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600; the rename makes the new content appear at once.
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=2)
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    async def get_tokens(self) -> OAuthToken | None:
        stored = self._entry().get("tokens")
        if not stored:
            return None
        tokens = dict(stored)
        # The SDK counts expires_in from when it loads the tokens; what is left of it is what
        # counts, so a token that expired while no bridge ran is refreshed, not sent.
        expires_at = tokens.pop("expires_at", None)
        if isinstance(expires_at, int | float) and tokens.get("expires_in") is not None:
            tokens["expires_in"] = max(0, int(expires_at - time.time()))
        return OAuthToken.model_validate(tokens)

    async def set_tokens(self, tokens: OAuthToken) -> None:
        stored = tokens.model_dump(mode="json", exclude_none=True)
        if tokens.expires_in is not None:
            stored["expires_at"] = int(time.time()) + tokens.expires_in
        self._write_entry("tokens", stored)

    def forget_tokens(self) -> None:
        """Drop this URL's tokens (keeping its client registration), before a new login."""
        data = self._read_all()
        entry = data.get(self.server_url)
        if isinstance(entry, dict) and "tokens" in entry:
            self._write_entry("tokens", None)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        info = self._entry().get("client_info")
        return OAuthClientInformationFull.model_validate(info) if info else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._write_entry("client_info", client_info.model_dump(mode="json", exclude_none=True))

    def get_discovery(self) -> tuple[OAuthMetadata, ProtectedResourceMetadata | None] | None:
        """The authorization server's metadata (and the gateway's) found by the last login."""
        found = self._entry().get("discovery")
        if not isinstance(found, dict) or not found.get("oauth_metadata"):
            return None
        resource = found.get("resource_metadata")
        return (
            OAuthMetadata.model_validate(found["oauth_metadata"]),
            ProtectedResourceMetadata.model_validate(resource) if resource else None,
        )

    def set_discovery(
        self, oauth_metadata: OAuthMetadata, resource: ProtectedResourceMetadata | None
    ) -> None:
        found = {"oauth_metadata": oauth_metadata.model_dump(mode="json", exclude_none=True)}
        if resource is not None:
            found["resource_metadata"] = resource.model_dump(mode="json", exclude_none=True)
        self._write_entry("discovery", found)
