"""The app the gateway serves: its spec loaded (TASKGATE_APP, or the task service), its read
tools compiled and its write tools mapped from its OpenAPI document, all checked at start."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.app_auth import (
    AppAuthFor,
    AppAuthInvalid,
    ClaimVerifier,
    app_auth_for,
    token_verifier,
)
from gateway.openapi_tools import OpenApiError, WriteOperation, write_operations
from readmodel.reads import CompiledRead, SpecError, compile_reads, owner_id_kind
from shared.appspec import AppSpec
from shared.settings import Settings
from shared.spec_loader import SpecLoadError, load_spec, openapi_document
from shared.user_ids import UserIds


class AppSpecInvalid(ValueError):
    """The app spec cannot be served; raised when the gateway starts, never at a call."""


@dataclass(frozen=True)
class ServedApp:
    spec: AppSpec
    reads: dict[str, CompiledRead]
    writes: list[WriteOperation]
    verifier: ClaimVerifier | None  # the app's own tokens; None: taskgate's JwtVerifier
    auth_for: AppAuthFor | None  # how calls reach the app; None: token exchange
    user_ids: UserIds  # the kind of user id its owner columns hold


def load_served_app(settings: Settings) -> ServedApp:
    where = settings.taskgate_app or "the task service"
    try:
        spec = load_spec(settings.taskgate_app)
        reads = compile_reads(spec)
        user_ids = owner_id_kind(spec)
        writes = write_operations(openapi_document(spec), spec.writes)
        verifier, auth_for = token_verifier(spec, user_ids), app_auth_for(spec)
    except (SpecLoadError, SpecError, OpenApiError, AppAuthInvalid) as exc:
        raise AppSpecInvalid(f"app spec {where}: {exc}") from None
    shared = sorted(set(reads) & {op.name for op in writes})
    if shared:
        raise AppSpecInvalid(f"app spec {where}: read and write tools share names: {shared}")
    unknown = sorted(set(settings.cache_ttl_overrides) - set(reads))
    if unknown:
        raise AppSpecInvalid(
            f"CACHE_TTL_OVERRIDES names tools that are not read tools of {where}: {unknown}; "
            f"its read tools are: {sorted(reads)}"
        )
    return ServedApp(spec, reads, writes, verifier, auth_for, user_ids)
