"""Support agents: skills per category, capacity, active flag."""
from __future__ import annotations

from flask import url_for

from smart_support.api import Blueprint
from smart_support.api.classify import require_json
from smart_support.api.desk_access import answering_errors, desk
from smart_support.api.schemas import (
    AgentListQuerySchema, AgentListSchema, AgentPatchSchema, AgentRecordSchema, AgentSchema,
)

blp = Blueprint("agents", __name__, description="Ticket desk: agents and their skills.")
blp.before_request(require_json)


@blp.route("/agents", methods=["POST"])
@blp.arguments(AgentSchema)
@blp.response(201, AgentRecordSchema)
@blp.alt_response(503, description="Database unavailable: nothing was stored.")
def create_agent(body):
    """Add an agent; waiting tickets it fits are assigned to it at once."""
    with answering_errors("the agent was not stored"):
        agent = desk().add_agent(body["name"].strip(), body.get("skills") or {},
                                 body["capacity"], body["active"])
    return agent, 201, {"Location": url_for("agents.get_agent", agent_id=agent["id"])}


@blp.route("/agents", methods=["GET"])
@blp.arguments(AgentListQuerySchema, location="query")
@blp.response(200, AgentListSchema)
def list_agents(query):
    """Agents in the order they were added, optionally only active or inactive ones."""
    with answering_errors("nothing was read"):
        return desk().agent_list(query["limit"], query["offset"], query.get("active"))


@blp.route("/agents/<int(max=2147483647):agent_id>", methods=["GET"])
@blp.response(200, AgentRecordSchema)
@blp.alt_response(404, description="No such agent.")
def get_agent(agent_id):
    """One agent with its current load."""
    with answering_errors("nothing was read"):
        return desk().agent(agent_id)


@blp.route("/agents/<int(max=2147483647):agent_id>", methods=["PATCH"])
@blp.arguments(AgentPatchSchema)
@blp.response(200, AgentRecordSchema)
@blp.alt_response(404, description="No such agent.")
def update_agent(body, agent_id):
    """Change an agent; going inactive returns its open tickets to the queue."""
    if "name" in body:
        body["name"] = body["name"].strip()
    with answering_errors("the agent was not changed"):
        return desk().update_agent(agent_id, body)
