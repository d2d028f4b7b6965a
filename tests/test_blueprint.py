"""smart_support.api.Blueprint does less per request than flask-smorest's Blueprint; these
tests serve the same views through both and require the same answers and the same OpenAPI
document, for valid and invalid requests alike."""
from __future__ import annotations

import json

import pytest
from flask import Flask, Response, current_app
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, ValidationError, fields, validate, validates

from smart_support import errors
from smart_support.api import Blueprint


class BodySchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=10))
    count = fields.Integer(load_default=1)
    tags = fields.List(fields.String(), load_default=list)


class QuerySchema(Schema):
    verbose = fields.Boolean(load_default=False)
    ids = fields.List(fields.Integer(), load_default=list)


class PageSchema(Schema):
    limit = fields.Integer(load_default=50)
    verbose = fields.Boolean(load_default=False)

    @validates("limit")
    def _at_most_the_apps_limit(self, value, **_):
        if value > current_app.config["MAX_LIMIT"]:
            raise ValidationError(f"At most {current_app.config['MAX_LIMIT']}.")


class AnswerSchema(Schema):
    name = fields.String()
    count = fields.Integer()
    verbose = fields.Boolean()
    item = fields.Integer()


def build_app(blueprint_class, max_limit: int = 100) -> Flask:
    app = Flask(__name__)
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3",
                      MAX_LIMIT=max_limit)
    blp = blueprint_class("things", __name__, description="Things.")

    @blp.route("/things", methods=["POST"])
    @blp.arguments(QuerySchema, location="query", as_kwargs=True)
    @blp.arguments(BodySchema)
    @blp.response(200, AnswerSchema)
    @blp.alt_response(404, description="No such thing.")
    def post_thing(body, verbose=False, ids=()):
        """Create a thing."""
        if body["name"] == "tuple":
            return {**body, "verbose": verbose}, 201, {"X-Ids": ",".join(map(str, ids))}
        if body["name"] == "raw":
            return Response("raw", status=202, mimetype="text/plain")
        return {**body, "verbose": verbose, "unlisted": "dropped by the schema"}

    @blp.route("/things/<int:item>", methods=["PUT"])
    @blp.arguments(BodySchema, unknown="exclude", error_status_code=400)
    @blp.response(200, AnswerSchema)
    def put_thing(body, item):
        """Replace a thing."""
        return {**body, "item": item}

    @blp.route("/things/<int:item>", methods=["DELETE"])
    @blp.response(204)
    def delete_thing(item):
        """Delete a thing."""
        return "", 204

    @blp.route("/pages", methods=["GET"])
    @blp.arguments(PageSchema, location="query")
    def list_pages(page):
        """List pages; the view changes the dict it is given."""
        return {"limit": page.pop("limit"), "rest": page}

    api = Api(app)
    api.register_blueprint(blp)
    errors.register_error_handlers(app)
    return app


REQUESTS = [
    ("POST", "/things", {"name": "a", "count": 3, "tags": ["x"]}),
    ("POST", "/things?verbose=true&ids=1&ids=2", {"name": "a"}),
    ("POST", "/things?verbose=maybe", {"name": "a"}),
    ("POST", "/things?ids=x", {"name": "a"}),
    ("POST", "/things?unknown=1", {"name": "a"}),
    ("POST", "/things", {}),
    ("POST", "/things", {"name": ""}),
    ("POST", "/things", {"name": "a", "count": "many", "extra": 1}),
    ("POST", "/things", ["not", "an", "object"]),
    ("POST", "/things", b"{not json"),
    ("POST", "/things", b""),
    ("POST", "/things?ids=1&ids=2", {"name": "tuple"}),
    ("POST", "/things", {"name": "raw"}),
    ("PUT", "/things/7", {"name": "b", "extra": 1}),
    ("PUT", "/things/7", {"count": 2}),
    ("DELETE", "/things/7", None),
]


def answer(app: Flask, method: str, url: str, body):
    client = app.test_client()
    if isinstance(body, bytes):
        response = client.open(url, method=method, data=body, content_type="application/json")
    else:
        response = client.open(url, method=method, json=body)
    return response.status_code, dict(response.headers), response.get_data()


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS,
                         ids=[f"{m} {u} {b!r:.30}" for m, u, b in REQUESTS])
def test_answers_are_the_same_as_with_flask_smorests_blueprint(method, url, body):
    ours, theirs = build_app(Blueprint), build_app(SmorestBlueprint)
    assert answer(ours, method, url, body) == answer(theirs, method, url, body)


def test_an_empty_query_string_parses_the_same_on_every_request():
    # what an empty query string parses to is kept per app and route; each request gets its
    # own copy, and each app its own answer (a validator may read the app's settings)
    for max_limit in (100, 10):
        ours = build_app(Blueprint, max_limit).test_client()
        theirs = build_app(SmorestBlueprint, max_limit).test_client()
        for url in ("/pages", "/pages", "/pages?limit=5", "/pages", "/pages?verbose=yes",
                    "/pages?limit=x", "/pages"):
            a, b = ours.get(url), theirs.get(url)
            assert (a.status_code, a.get_json()) == (b.status_code, b.get_json()), url
    assert build_app(Blueprint, 100).test_client().get("/pages").get_json() == {
        "limit": 50, "rest": {"verbose": False}}
    assert build_app(Blueprint, 10).test_client().get("/pages").status_code == 422


def test_a_validation_error_still_names_the_field():
    status, _, data = answer(build_app(Blueprint), "POST", "/things", {"count": "many"})
    assert status == 422
    assert set(json.loads(data)["errors"]) == {"name", "count"}


def test_the_openapi_document_is_the_same_as_flask_smorests():
    ours = build_app(Blueprint).extensions["flask-smorest"]["apis"][""]["ext_obj"].spec
    theirs = build_app(SmorestBlueprint).extensions["flask-smorest"]["apis"][""]["ext_obj"].spec
    assert json.dumps(ours.to_dict(), sort_keys=True) == json.dumps(theirs.to_dict(),
                                                                   sort_keys=True)


def test_each_decorator_adds_at_most_one_wrapper_per_request():
    app = build_app(Blueprint)
    view = app.view_functions["things.post_thing"]
    depth = 0
    while hasattr(view, "__wrapped__"):
        view, depth = view.__wrapped__, depth + 1
    assert view.__name__ == "post_thing"
    assert depth == 3  # two arguments() and one response(); alt_response adds none


def test_an_option_that_would_only_be_ignored_is_refused():
    with pytest.raises(TypeError, match=r"options: \['arg_name'\]$"):
        Blueprint("x", __name__).arguments(BodySchema, arg_name="body", description="a body")
