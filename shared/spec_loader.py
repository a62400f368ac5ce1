"""Loading an app spec by `module:attribute` (TASKGATE_APP, --app), and its OpenAPI document.

A user's app often has packages named like taskgate's own (`backend`, `shared`, `gateway`). The
spec is imported with those names out of sys.modules, from the app's folder, and taskgate's are
put back after: the user's modules stay reachable through the objects the spec holds (models,
schemas, the app), never by name. `taskgate.spec` and `taskgate.fastapi` are imported first,
so the spec gets the same API objects the gateway checks against.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.appspec import AppSpec

# taskgate's top-level packages that a user's app may also have.
_OWN_PACKAGES = frozenset({"backend", "gateway", "readmodel", "shared"})
# What a user's spec and app import of taskgate's: loaded before the swap, so they are found.
PUBLIC_API = ("taskgate.spec", "taskgate.fastapi")


class SpecLoadError(ValueError):
    """The spec named cannot be loaded; the message says what to change."""


def _own(name: str) -> bool:
    return name.split(".", 1)[0] in _OWN_PACKAGES


@contextmanager
def _isolated(app_dir: str) -> Iterator[None]:
    for name in PUBLIC_API:
        importlib.import_module(name)
    saved = {name: module for name, module in sys.modules.items() if _own(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, app_dir)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(app_dir)
        for name in [n for n in sys.modules if _own(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        importlib.invalidate_caches()


def load_spec(reference: str | None, app_dir: str | None = None) -> AppSpec:
    """The spec `module:attribute` names (from `app_dir`, the working folder by default; or
    `path/to/module.py:attribute`, from that file's folder), or the task service's when
    `reference` is None."""
    if reference is None:
        from shared.task_service import TASKS

        return TASKS
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise SpecLoadError(f"--app must be module:attribute, not {reference!r}")
    folder = os.path.abspath(app_dir or os.getcwd())
    if "/" in module_name or module_name.endswith(".py"):  # a path: its folder is the app's
        folder = os.path.abspath(os.path.join(folder, os.path.dirname(module_name)))
        module_name = os.path.basename(module_name).removesuffix(".py")
    with _isolated(folder):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # whatever the spec's module raises, said at start
            raise SpecLoadError(f"cannot import {module_name} from {folder}: {exc}") from exc
        spec = getattr(module, attribute, None)
        if not isinstance(spec, AppSpec):
            raise SpecLoadError(f"{reference} is not a taskgate.spec.AppSpec")
        if not spec.health_path.startswith("/"):
            raise SpecLoadError(f"{reference}: health_path must be a path, starting with /")
        spec.root = os.path.dirname(os.path.abspath(module.__file__ or folder))
        spec.openapi_document = _openapi_of(spec, folder)
    return spec


def openapi_document(spec: AppSpec) -> dict[str, Any]:
    """The app's OpenAPI document: a JSON file the spec names, or its FastAPI app's own."""
    if spec.openapi_document is None:
        spec.openapi_document = _openapi_of(spec, spec.root or os.getcwd())
    return spec.openapi_document


def _openapi_of(spec: AppSpec, folder: str) -> dict[str, Any]:
    if spec.openapi.endswith(".json"):
        path = Path(spec.openapi)
        if not path.is_absolute():
            path = Path(spec.root or folder) / path
        try:
            document: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SpecLoadError(f"cannot read the OpenAPI document {path}: {exc}") from exc
        return document
    module_name, _, attribute = spec.openapi.partition(":")
    try:
        app = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # whatever the app's module raises, said at start
        raise SpecLoadError(f"cannot import the app {spec.openapi}: {exc}") from exc
    openapi = getattr(app, "openapi", None)
    if not callable(openapi):
        raise SpecLoadError(f"{spec.openapi} is not a FastAPI app")
    result: dict[str, Any] = openapi()
    return result
