"""The single JSON error shape: {"code", "status", "message", "errors"?}.

`errors` maps each offending field to its messages, e.g. {"description": ["Must not be blank."]};
batch fields are nested by index: {"tickets": {"3": {"description": [...]}}}.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request body is not valid JSON.",
    401: "A valid API key is required.",
    404: "No such route.",
    405: "This method is not allowed on this route.",
    413: "The request body is larger than the limit.",
    415: "Content-Type must be application/json.",
    422: "The request has invalid fields.",
    500: "Internal error; it has been logged.",
    503: "The service is not ready.",
}


def error_response(code: int, message: str | None = None, errors: dict | None = None,
                   headers: dict | None = None):
    payload = {"code": code, "status": _status_name(code),
               "message": message or MESSAGES.get(code, _status_name(code))}
    if errors:
        payload["errors"] = errors
    response = jsonify(payload)
    response.status_code = code
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _status_name(code: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(code, "Error")


def _flatten_locations(messages: dict) -> dict:
    """webargs nests field errors under their location ("json"); clients want the fields."""
    flat = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    if errors:
        errors = _flatten_locations(errors)
    message = data.get("message")
    if error.code == 400 and errors and "json" in (data.get("messages") or {}):
        message = MESSAGES[400]
    elif error.code not in MESSAGES and not message:
        message = error.description
    headers = dict(data.get("headers") or {})
    if error.code == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code, message, errors, headers)


def handle_unexpected(error: Exception):
    log.exception("unhandled error", exc_info=error)
    return error_response(500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
