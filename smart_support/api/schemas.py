"""Every request and response schema of the API, in one place.

Size limits come from the settings of the running app (SMART_SUPPORT_MAX_*), so they are
checked here at validation time rather than fixed in the schema classes.
"""
from __future__ import annotations

from flask import current_app
from marshmallow import (Schema, ValidationError, fields, pre_load, validate, validates,
                         validates_schema)

NOT_BLANK = validate.Regexp(r"[\s\S]*\S", error="Must not be blank.")


def settings():
    return current_app.extensions["smart_support"].settings


def within_limit(value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise ValidationError(f"Longer than the limit of {limit} characters.")


class BodySchema(Schema):
    error_messages = {"type": "The body must be a JSON object."}


class TicketTextSchema(BodySchema):
    """Size limits shared by every body that carries a ticket's subject and description."""

    @validates("subject")
    def _subject(self, value, **_):
        within_limit(value, settings().max_subject_chars)

    @validates("description")
    def _description(self, value, **_):
        within_limit(value, settings().max_description_chars)


class TicketSchema(TicketTextSchema):
    ticket_id = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=200),
                              metadata={"description": "Client's own id, echoed back."})
    subject = fields.String(load_default="", allow_none=True,
                            metadata={"description": "E-mail subject; may be empty "
                                                     "(default limit 1,000 characters)."})
    description = fields.String(required=True, validate=NOT_BLANK,
                                metadata={"description": "Ticket body; must not be blank "
                                                         "(default limit 20,000 characters)."})


class BatchRequestSchema(BodySchema):
    tickets = fields.List(fields.Nested(TicketSchema), required=True,
                          metadata={"description": "1 to SMART_SUPPORT_MAX_BATCH_SIZE tickets "
                                                   "(default 256)."})

    @pre_load
    def _check_count_before_nested_validation(self, data, **_):
        # Reject an oversized list before validating thousands of nested items.
        if isinstance(data, dict) and isinstance(data.get("tickets"), list):
            self._count(data["tickets"])
        return data

    @validates_schema
    def _not_empty(self, data, **_):
        self._count(data.get("tickets", []))

    @staticmethod
    def _count(tickets):
        limit = settings().max_batch_size
        if not tickets:
            raise ValidationError("At least one ticket is required.", "tickets")
        if len(tickets) > limit:
            raise ValidationError(f"At most {limit} tickets per batch, got {len(tickets)}.",
                                  "tickets")


class ExplainQuerySchema(Schema):
    explain = fields.Boolean(load_default=False, metadata={
        "description": "Also return the words that pushed the decision most (occlusion over "
                       "the transformer: one extra batched pass, about 0.1-0.3 s)."})


class OverrideSchema(Schema):
    rule = fields.String(metadata={"description": "Name of the rule that fired."})
    matched = fields.List(fields.String(), metadata={"description": "Phrases that matched."})
    from_category = fields.String(metadata={"description": "The model's category it replaced."})
    model_confidence = fields.Float()


class WordWeightSchema(Schema):
    word = fields.String(required=True)
    weight = fields.Float(required=True, metadata={
        "description": "Drop in the category's probability when the word is removed."})


class ExplanationSchema(Schema):
    method = fields.String(required=True, metadata={
        "description": "occlusion, or unavailable while the baseline answers."})
    model_category = fields.String(required=True)
    words = fields.List(fields.Nested(WordWeightSchema), required=True)
    rule = fields.Nested(OverrideSchema, allow_none=True, required=True)


class ClassificationSchema(Schema):
    ticket_id = fields.String(allow_none=True)
    category = fields.String(required=True, metadata={"description": "Final category (team)."})
    urgency_score = fields.Float(required=True, metadata={"description": "Urgency in [0, 1]."})
    confidence = fields.Float(required=True,
                              metadata={"description": "Probability of the returned category."})
    scores = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                         metadata={"description": "Probability per category."})
    model_category = fields.String(required=True,
                                   metadata={"description": "The model's answer before rules."})
    override = fields.Nested(OverrideSchema, allow_none=True, required=True,
                             metadata={"description": "null, or the rule that changed the "
                                                      "category and the words that matched."})
    model_version = fields.String(required=True)
    model = fields.String(required=True, metadata={
        "description": "Which model answered: transformer; ensemble (transformer and baseline "
                       "blended, SMART_SUPPORT_ENSEMBLE); or baseline while the circuit breaker "
                       "is open."})
    degraded = fields.Boolean(required=True, metadata={
        "description": "True when the fallback baseline answered instead of the transformer."})
    needs_review = fields.Boolean(required=True, metadata={
        "description": "Confidence is below the review threshold: a person should check it."})
    alert = fields.Nested("AlertRefSchema", allow_none=True, metadata={
        "description": "null unless urgency is above the alert threshold and webhooks are set."})
    explanation = fields.Nested(ExplanationSchema, metadata={
        "description": "Only with ?explain=true."})
    latency_seconds = fields.Float(metadata={"description": "Server wall time of the pipeline."})


class BatchResponseSchema(Schema):
    results = fields.List(fields.Nested(ClassificationSchema), required=True)
    count = fields.Integer(required=True)
    model_version = fields.String(required=True)
    degraded = fields.Boolean(required=True)
    latency_seconds = fields.Float(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    ready = fields.Boolean(required=True)
    model_version = fields.String(allow_none=True)
    labels = fields.List(fields.String())
    runtime = fields.Dict(metadata={"description": "Where the model runs: name (onnx or torch), "
                                                   "quantize (int8 or none), threads per call."})
    answered_by = fields.String(metadata={
        "description": "What answers while the breaker is closed: transformer, or ensemble "
                       "(SMART_SUPPORT_ENSEMBLE: transformer and baseline blended)."})
    degraded = fields.Boolean(metadata={"description": "The breaker is open: the baseline answers."})
    breaker = fields.Dict(metadata={"description": "Circuit-breaker state of the worker that answered."})
    alerts = fields.Dict(allow_none=True, metadata={
        "description": "Outbox: deliveries waiting, the limit, and whether it is full."})
    desk = fields.Dict(metadata={"description": "Ticket desk: available (its database opened), "
                                                "storm_detection, storm_window_tickets."})
    reason = fields.String(metadata={"description": "Why the service is not ready."})
    file = fields.String(allow_none=True, metadata={"description": "The artifact at fault."})


def document_limits(spec, limits, labels: list[str] | None) -> None:
    """Write the running app's size limits and labels into its OpenAPI components, so the
    published contract (and the fuzz tests that read it) match what this instance enforces."""
    schemas = spec.components.schemas
    ticket = schemas["Ticket"]["properties"]
    ticket["description"].update(minLength=1, maxLength=limits.max_description_chars)
    ticket["subject"]["maxLength"] = limits.max_subject_chars
    schemas["BatchRequest"]["properties"]["tickets"].update(minItems=1,
                                                           maxItems=limits.max_batch_size)
    feedback = schemas["Feedback"]
    feedback["properties"]["description"].update(minLength=1,
                                                  maxLength=limits.max_description_chars)
    feedback["properties"]["subject"]["maxLength"] = limits.max_subject_chars
    feedback["properties"]["note"]["maxLength"] = limits.max_feedback_note_chars
    feedback["anyOf"] = [{"required": ["description"]}, {"required": ["ticket_id"]}]
    if labels:
        feedback["properties"]["category"]["enum"] = list(labels)
    _document_desk_limits(spec, limits, labels)


def _document_desk_limits(spec, limits, labels) -> None:
    schemas = spec.components.schemas
    ticket = schemas["NewTicket"]["properties"]
    ticket["description"].update(minLength=1, maxLength=limits.max_description_chars)
    ticket["subject"]["maxLength"] = limits.max_subject_chars
    schemas["Note"]["properties"]["resolution"]["maxLength"] = limits.max_resolution_chars
    schemas["AgentPatch"]["minProperties"] = 1
    for name in ("Agent", "AgentPatch"):
        agent = schemas[name]["properties"]
        agent["capacity"]["maximum"] = limits.max_agent_capacity
        if labels:  # OpenAPI 3.0 has no propertyNames: one property per label instead
            level = agent["skills"].pop("additionalProperties", {"type": "number"})
            agent["skills"].update(properties={label: dict(level) for label in labels},
                                   additionalProperties=False)
    for operations in spec._paths.values():  # apispec keeps no public accessor for paths
        for operation in operations.values():
            if not isinstance(operation, dict):  # path-level "parameters" list
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == "limit" \
                        and "maximum" not in parameter.get("schema", {}):
                    parameter["schema"]["maximum"] = limits.max_page_size


class FeedbackSchema(TicketTextSchema):
    ticket_id = fields.String(load_default=None, allow_none=False,
                              validate=validate.Length(min=1, max=200),
                              metadata={"description": "Id sent with /classify; enough on its "
                                                       "own when that request had one."})
    subject = fields.String(load_default="", allow_none=True)
    description = fields.String(load_default=None, allow_none=False, validate=NOT_BLANK,
                                metadata={"description": "Ticket text; required unless "
                                                         "ticket_id names a logged ticket."})
    category = fields.String(required=True, validate=validate.Length(min=1, max=100),
                             metadata={"description": "The right category: one of the "
                                                      "model's labels."})
    urgency = fields.Float(load_default=None, allow_none=True,
                           validate=validate.Range(min=0.0, max=1.0),
                           metadata={"description": "The right urgency in [0, 1], if known."})
    agent = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(min=1, max=200))
    note = fields.String(load_default=None, allow_none=True,
                         metadata={"description": "Free text (default limit 2,000 characters)."})

    @validates("note")
    def _note(self, value, **_):
        within_limit(value, settings().max_feedback_note_chars)

    @validates_schema
    def _text_or_id(self, data, **_):
        if not data.get("description") and not data.get("ticket_id"):
            raise ValidationError("Send the ticket's description, or the ticket_id it was "
                                  "classified with.", "description")


class FeedbackRecordSchema(Schema):
    id = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    ticket_id = fields.String(allow_none=True)
    category = fields.String(required=True)
    urgency = fields.Float(allow_none=True)
    predicted_category = fields.String(allow_none=True)
    predicted_urgency = fields.Float(allow_none=True)
    agent = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    model_version = fields.String(allow_none=True)


class FeedbackListQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))


class FeedbackListSchema(Schema):
    feedback = fields.List(fields.Nested(FeedbackRecordSchema), required=True)


class AlertRefSchema(Schema):
    id = fields.String(allow_none=True, metadata={"description": "Stable alert id."})
    status = fields.String(required=True, metadata={
        "description": "queued (recorded durably before this answer), or not_recorded."})
    reason = fields.String(metadata={"description": "Why it was not recorded."})


class AlertListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "delivering", "delivered",
                                                    "dead", "suppressed"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class AlertRowSchema(Schema):
    alert_id = fields.String(required=True)
    url = fields.String(required=True)
    format = fields.String(required=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(allow_none=True)


class AlertListSchema(Schema):
    alerts = fields.List(fields.Nested(AlertRowSchema), required=True)


class ReplaySchema(Schema):
    alert_id = fields.String(required=True)
    requeued = fields.Integer(required=True)


# -- the ticket desk ----------------------------------------------------------------------

PUBLIC_ID = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$", error=(
    "1 to 200 characters: letters, digits and . _ : - (it appears in URLs), starting with a "
    "letter or digit."))
MAX_ID = 2**31 - 1  # database INTEGER; path converters carry the same bound


def within_resolution_limit(value: str | None) -> None:
    within_limit(value, settings().max_resolution_chars)


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1), metadata={
        "description": "Page size, 1 to SMART_SUPPORT_MAX_PAGE_SIZE (default 500)."})
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))

    @validates("limit")
    def _limit(self, value, **_):
        if value > settings().max_page_size:
            raise ValidationError(f"At most {settings().max_page_size}.")


class QueueQuerySchema(PageQuerySchema):
    category = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "Only tickets of this category."})


class TicketListQuerySchema(QueueQuerySchema):
    status = fields.String(validate=validate.OneOf(["queued", "assigned", "resolved"]))
    agent_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID), metadata={
        "description": "Only this agent's tickets (e.g. its open ones: status=assigned)."})
    incident_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))


class NewTicketSchema(TicketTextSchema):
    ticket_id = fields.String(load_default=None, allow_none=True, validate=PUBLIC_ID, metadata={
        "description": "Client's id: sending the same id again returns the stored ticket "
                       "(idempotent); omitted, the server assigns one."})
    subject = fields.String(load_default="", allow_none=True)
    description = fields.String(required=True, validate=NOT_BLANK)


class NoteSchema(BodySchema):
    resolution = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Free text (default limit 2,000 characters)."})

    @validates("resolution")
    def _resolution(self, value, **_):
        within_resolution_limit(value)


class ClaimSchema(BodySchema):
    agent_id = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=MAX_ID))


class DeskTicketSchema(Schema):
    ticket_id = fields.String(required=True)
    subject = fields.String(required=True)
    description = fields.String(required=True)
    category = fields.String(required=True)
    urgency_score = fields.Float(required=True)
    confidence = fields.Float(required=True)
    model_category = fields.String(required=True)
    override = fields.Nested(OverrideSchema, allow_none=True)
    needs_review = fields.Boolean(required=True)
    model = fields.String(required=True)
    model_version = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"description": "queued, assigned or "
                                                                   "resolved."})
    agent_id = fields.Integer(allow_none=True)
    incident_id = fields.Integer(allow_none=True, metadata={
        "description": "The storm incident this ticket belongs to; its own alert is then "
                       "replaced by the incident's."})
    alert_id = fields.String(allow_none=True)
    requeues = fields.Integer(required=True)
    resolution = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    assigned_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    alert = fields.Nested(AlertRefSchema, allow_none=True, metadata={
        "description": "On creation only: the urgent-ticket alert recorded for it, if any."})


class PageSchema(Schema):
    total = fields.Integer(required=True, metadata={"description": "Matching items in all."})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class TicketPageSchema(PageSchema):
    tickets = fields.List(fields.Nested(DeskTicketSchema), required=True)


def _skill_levels():
    return fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)),
                       values=fields.Float(validate=validate.Range(min=0.0, max=1.0)),
                       metadata={"description": "Skill in [0, 1] per category (a model label); "
                                                "0 or absent: never gets that category."})


class AgentSchema(BodySchema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), NOT_BLANK])
    skills = _skill_levels()
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=0),
                              metadata={"description": "Most open tickets at once, 0 to "
                                                       "SMART_SUPPORT_MAX_AGENT_CAPACITY "
                                                       "(default 1,000)."})
    active = fields.Boolean(load_default=True)

    @validates("capacity")
    def _capacity(self, value, **_):
        if value > settings().max_agent_capacity:
            raise ValidationError(f"At most {settings().max_agent_capacity}.")

    @validates("skills")
    def _skills(self, value, **_):
        artifacts = current_app.extensions["smart_support"].artifacts
        if artifacts is None:  # no model loaded: nothing to check against
            return
        unknown = sorted(set(value or {}) - set(artifacts.labels))
        labels = artifacts.labels
        if unknown:
            raise ValidationError(f"Unknown categories {unknown}; the model's are {labels}.")


class AgentPatchSchema(AgentSchema):
    """Any subset of an agent's fields."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)

    @validates_schema
    def _not_empty(self, data, **_):
        if not data:
            raise ValidationError("Send at least one of name, skills, capacity, active.",
                                  "_schema")


class AgentRecordSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    skills = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    capacity = fields.Integer(required=True)
    active = fields.Boolean(required=True)
    load = fields.Integer(required=True, metadata={"description": "Open tickets now."})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class AgentListQuerySchema(PageQuerySchema):
    active = fields.Boolean()


class AgentListSchema(PageSchema):
    agents = fields.List(fields.Nested(AgentRecordSchema), required=True)


class IncidentSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "open or resolved."})
    title = fields.String(required=True, metadata={"description": "Masked preview of the "
                                                                  "report that opened it."})
    category = fields.String(required=True)
    ticket_count = fields.Integer(required=True)
    alert_id = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    last_ticket_at = fields.DateTime(required=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolution = fields.String(allow_none=True)
    ticket_ids = fields.List(fields.String(), metadata={
        "description": "On GET /incidents/{id}: its tickets, oldest first (up to 1,000)."})


class IncidentListQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(["open", "resolved"]))


class IncidentListSchema(PageSchema):
    incidents = fields.List(fields.Nested(IncidentSchema), required=True)
