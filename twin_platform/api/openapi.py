"""The OpenAPI document as this server behaves: what a client may send is what it accepts.

The request models carry the hard ceilings; this pass writes the configured limits into the
document (TWIN_API_MAX_K, TWIN_API_MAX_NEW_TOKENS), so a request that the schema allows is never
refused for them, and documents the Bearer key only when keys are configured (an open server
takes requests without one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twin_platform.settings import Settings

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def configured_limits(settings: Settings) -> dict[str, int]:
    """Request property -> the largest value this server accepts."""
    return {
        "k": settings.api_max_k,
        "max_tokens": settings.api_max_new_tokens,
        "max_completion_tokens": settings.api_max_new_tokens,
    }


def _integer_schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The integer schemas of a property (itself, or inside anyOf/oneOf for an optional one)."""
    if schema.get("type") == "integer":
        yield schema
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            yield from _integer_schemas(option)


def apply_limits(document: dict[str, Any], limits: dict[str, int]) -> None:
    """Lower each limited property's `maximum` to the configured value (never raise it)."""
    for model in document.get("components", {}).get("schemas", {}).values():
        for name, prop in model.get("properties", {}).items():
            if name not in limits:
                continue
            for integer in _integer_schemas(prop):
                integer["maximum"] = min(integer.get("maximum", limits[name]), limits[name])


def drop_security(document: dict[str, Any]) -> None:
    """An open server: no operation requires a key, and 401 is never answered."""
    for path in document.get("paths", {}).values():
        for method in HTTP_METHODS:
            operation = path.get(method)
            if operation is None:
                continue
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)
    document.get("components", {}).pop("securitySchemes", None)


def truthful(document: dict[str, Any], settings: Settings, keys_configured: bool) -> dict[str, Any]:
    apply_limits(document, configured_limits(settings))
    if not keys_configured:
        drop_security(document)
    return document
