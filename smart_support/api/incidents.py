"""Master incidents opened by storm detection."""
from __future__ import annotations


from smart_support.api import Blueprint
from smart_support.api.classify import require_json
from smart_support.api.desk_access import answering_errors, desk
from smart_support.api.schemas import (
    IncidentListQuerySchema, IncidentListSchema, IncidentSchema, NoteSchema,
)

blp = Blueprint("incidents", __name__,
                description="Ticket desk: storms of similar tickets grouped into incidents.")
blp.before_request(require_json)


@blp.route("/incidents", methods=["GET"])
@blp.arguments(IncidentListQuerySchema, location="query")
@blp.response(200, IncidentListSchema)
def list_incidents(query):
    """Incidents, newest first, optionally by status (open or resolved)."""
    with answering_errors("nothing was read"):
        return desk().incident_list(query["limit"], query["offset"], query.get("status"))


@blp.route("/incidents/<int(max=2147483647):incident_id>", methods=["GET"])
@blp.response(200, IncidentSchema)
@blp.alt_response(404, description="No such incident.")
def get_incident(incident_id):
    """One incident with the ids of its tickets."""
    with answering_errors("nothing was read"):
        return desk().incident(incident_id)


@blp.route("/incidents/<int(max=2147483647):incident_id>/resolve", methods=["POST"])
@blp.arguments(NoteSchema)
@blp.response(200, IncidentSchema)
@blp.alt_response(404, description="No such incident.")
def resolve_incident(body, incident_id):
    """Close the incident and every open ticket in it, freeing their agents."""
    with answering_errors("the incident was not resolved"):
        return desk().resolve_incident(incident_id, body.get("resolution"))
