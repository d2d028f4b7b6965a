"""Optional API keys (SMART_SUPPORT_API_KEYS). With none configured, every route is open.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every configured key is
compared in constant time, and all of them are always compared, so timing reveals neither a
key's prefix nor which key matched. Routes in SMART_SUPPORT_OPEN_ROUTES (health, readiness,
metrics and docs by default) need no key.
"""
from __future__ import annotations

import hmac

from flask import Flask, request

from smart_support.config import Settings
from smart_support.errors import error_response


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def key_is_valid(candidate: str | None, keys: tuple[str, ...]) -> bool:
    if not candidate:
        return False
    given = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def is_open(path: str, open_routes: tuple[str, ...]) -> bool:
    return any(path == route or path.startswith(route.rstrip("/") + "/") for route in open_routes)


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.api_keys:
        return

    @app.before_request
    def _require_api_key():
        if is_open(request.path, settings.open_routes):
            return None
        if key_is_valid(presented_key(), settings.api_keys):
            return None
        return error_response(401, "A valid API key is required (Authorization: Bearer <key> "
                                   "or X-API-Key).", headers={"WWW-Authenticate": "Bearer"})
