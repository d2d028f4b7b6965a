"""HTTP resources: each module is one blueprint; views only translate HTTP to calls and back."""
from __future__ import annotations

from flask_smorest import Blueprint as SmorestBlueprint


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint, with every argument schema built once: handed a schema class,
    webargs builds a new instance on each request, a measurable share of a /classify request's
    CPU (README, "Performance"). Our schemas keep no per-request state, so one instance serves
    every request."""

    def arguments(self, schema, *args, **kwargs):
        return super().arguments(schema() if isinstance(schema, type) else schema,
                                 *args, **kwargs)
