"""What an app spec imports: `from taskgate.spec import AppSpec, Writes, Rename, ...`.

The names live in shared.appspec (the gateway and the read model read them there); this is the
one import path users write, and the same objects.
"""

from __future__ import annotations

from shared.appspec import (
    AppSpec,
    BackendAuth,
    Identity,
    ReadTool,
    Rename,
    ServiceSession,
    SignedJwt,
    TokenExchange,
    Writes,
)

__all__ = [
    "AppSpec",
    "BackendAuth",
    "Identity",
    "ReadTool",
    "Rename",
    "ServiceSession",
    "SignedJwt",
    "TokenExchange",
    "Writes",
]
