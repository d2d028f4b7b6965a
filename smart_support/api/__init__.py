"""HTTP resources: each module is one blueprint; views only translate HTTP to calls and back."""
from __future__ import annotations

from functools import wraps

from flask import Response, current_app, request
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.utils import set_status_and_headers_in_response, unpack_tuple_response

# webargs' parse() options, and flask-smorest's options that only document; use_args' other
# options (arg_name, ...) are not used here
PARSE_OPTIONS = frozenset({"unknown", "validate", "error_status_code", "error_headers"})
DOCUMENT_OPTIONS = frozenset({"content_type", "required", "description", "example", "examples"})
IMMUTABLE = (str, int, float, bool, type(None))


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint, documenting every route as flask-smorest does, with one thin
    wrapper per decorator on each request (README, "Performance"):

    - `arguments`: one call to the same webargs parser that flask-smorest uses, so requests
      are parsed, validated and refused exactly as before. flask-smorest stacks its own wrapper,
      webargs' use_args wrapper and an `ensure_sync` check for coroutines (our views are plain
      functions) on each request. Every schema is built once: handed a class, webargs builds a
      new instance per request, and our schemas keep no per-request state. An empty query
      string is parsed once per app and route: webargs and marshmallow took 7% of the app's
      instructions per /classify request to find that `?explain` was absent;
    - `response`: the view's result dumped with the schema and sent as JSON, as flask-smorest
      does, without its coroutine check and without keeping the dump for ETags (no route here
      uses them);
    - `alt_response` only documents: flask-smorest wraps the view once more per documented
      error answer, each wrapper only calling the next.

    The OpenAPI document is flask-smorest's own: each decorator takes the `_apidoc` that
    flask-smorest's decorator would have written and drops its wrapper."""

    def arguments(self, schema, *, location="json", as_kwargs=False, **kwargs):
        schema = schema() if isinstance(schema, type) else schema
        refused = set(kwargs) - PARSE_OPTIONS - DOCUMENT_OPTIONS
        if refused:
            raise TypeError(f"unsupported arguments() options: {sorted(refused)}")
        options = {k: v for k, v in kwargs.items() if k in PARSE_OPTIONS}
        document = super().arguments(schema, location=location, as_kwargs=as_kwargs, **kwargs)
        parse = self.ARGUMENTS_PARSER.parse
        if location in ("query", "querystring"):
            parse = _empty_query_parsed_once(parse, schema)

        def decorator(view):
            if as_kwargs:
                @wraps(view)
                def parsed(*args, **view_kwargs):
                    view_kwargs.update(parse(schema, location=location, **options))
                    return view(*args, **view_kwargs)
            else:
                @wraps(view)
                def parsed(*args, **view_kwargs):
                    return view(*args, parse(schema, location=location, **options),
                                **view_kwargs)
            parsed._apidoc = document(view)._apidoc
            return parsed

        return decorator

    def response(self, status_code, schema=None, **kwargs):
        schema = schema() if isinstance(schema, type) else schema
        document = super().response(status_code, schema, **kwargs)

        def decorator(view):
            @wraps(view)
            def answered(*args, **view_kwargs):
                result, status, headers = unpack_tuple_response(view(*args, **view_kwargs))
                if isinstance(result, Response):
                    set_status_and_headers_in_response(result, status, headers)
                    return result
                response = current_app.json.response(
                    result if schema is None else schema.dump(result))
                set_status_and_headers_in_response(
                    response, status_code if status is None else status, headers)
                return response

            answered._apidoc = document(view)._apidoc
            return answered

        return decorator

    def alt_response(self, *args, **kwargs):
        document = super().alt_response(*args, **kwargs)

        def decorator(view):
            view._apidoc = document(view)._apidoc
            return view

        return decorator


def _empty_query_parsed_once(parse, schema):
    """`parse`, with what an empty query string parses to kept per app and reused.

    It is the same on every request: the schema's defaults, validated under the app's
    settings (a validator may read them, so each app keeps its own). A failure is not kept:
    it is raised on every such request. Kept only when no default is computed per request
    (a callable) and every value is immutable; each request gets its own copy of the dict."""
    computed = any(callable(field.load_default) for field in schema.fields.values())
    route = object()  # the key: one schema instance may serve routes with other options

    def parsed(schema_, location, **options):
        if computed or request.query_string:
            return parse(schema_, location=location, **options)
        kept = current_app.extensions.setdefault("smart_support_empty_queries", {})
        arguments = kept.get(route)
        if arguments is None:
            arguments = parse(schema_, location=location, **options)
            if not all(isinstance(value, IMMUTABLE) for value in arguments.values()):
                return arguments
            kept[route] = arguments
        return dict(arguments)

    return parsed
