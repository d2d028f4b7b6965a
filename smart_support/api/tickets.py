"""The ticket desk's tickets and queue: submit, read, claim, resolve, requeue."""
from __future__ import annotations

from flask import url_for

from smart_support.api import Blueprint
from smart_support.api.classify import require_json
from smart_support.api.desk_access import answering_errors, desk
from smart_support.api.schemas import (
    ClaimSchema, DeskTicketSchema, NewTicketSchema, NoteSchema, QueueQuerySchema,
    TicketListQuerySchema, TicketPageSchema,
)

blp = Blueprint("tickets", __name__, description="Ticket desk: tickets and the priority queue.")
blp.before_request(require_json)

NOT_RECORDED = "the ticket was not recorded; send it again (same ticket_id) when it is back"


@blp.route("/tickets", methods=["POST"])
@blp.arguments(NewTicketSchema)
@blp.response(201, DeskTicketSchema, description="Stored, classified and queued (or assigned).")
@blp.alt_response(200, schema=DeskTicketSchema,
                  description="This ticket_id was already stored: the stored ticket.")
@blp.alt_response(409, description="This ticket_id was used for a different ticket.")
@blp.alt_response(415, description="Content-Type is not application/json.")
@blp.alt_response(503, description="Model or database unavailable: nothing was stored.")
def create_ticket(body):
    """Classify, store and queue a ticket; idempotent on the client's ticket_id."""
    with answering_errors(NOT_RECORDED):
        ticket, created = desk().submit(body.get("ticket_id"), body.get("subject") or "",
                                        body["description"])
    location = {"Location": url_for("tickets.get_ticket", ticket_id=ticket["ticket_id"])}
    return ticket, (201 if created else 200), location


@blp.route("/tickets/<string:ticket_id>", methods=["GET"])
@blp.response(200, DeskTicketSchema)
@blp.alt_response(404, description="No such ticket.")
def get_ticket(ticket_id):
    """One ticket with its classification, status, agent and incident."""
    with answering_errors("nothing was read"):
        return desk().get(ticket_id)


@blp.route("/tickets/<string:ticket_id>/resolve", methods=["POST"])
@blp.arguments(NoteSchema)
@blp.response(200, DeskTicketSchema)
@blp.alt_response(404, description="No such ticket.")
def resolve_ticket(body, ticket_id):
    """Close a ticket and free its agent; resolving twice changes nothing."""
    with answering_errors("the ticket was not resolved"):
        return desk().resolve(ticket_id, body.get("resolution"))


@blp.route("/tickets/<string:ticket_id>/requeue", methods=["POST"])
@blp.arguments(NoteSchema)
@blp.response(200, DeskTicketSchema)
@blp.alt_response(404, description="No such ticket.")
@blp.alt_response(409, description="The ticket is already waiting in the queue.")
def requeue_ticket(body, ticket_id):
    """Give an assigned ticket back to the queue, or reopen a resolved one."""
    with answering_errors("the ticket was not re-queued"):
        return desk().requeue(ticket_id, body.get("resolution"))


@blp.route("/tickets", methods=["GET"])
@blp.arguments(TicketListQuerySchema, location="query")
@blp.response(200, TicketPageSchema)
def list_tickets(query):
    """Tickets by status, category, agent or incident; newest first (waiting: most urgent)."""
    filters = {k: query.get(k) for k in ("status", "category", "agent_id", "incident_id")}
    with answering_errors("nothing was read"):
        return desk().ticket_list(query["limit"], query["offset"], **filters)


@blp.route("/queue", methods=["GET"])
@blp.arguments(QueueQuerySchema, location="query")
@blp.response(200, TicketPageSchema)
def list_queue(query):
    """Waiting tickets, most urgent first, then oldest first."""
    with answering_errors("nothing was read"):
        return desk().queue(query["limit"], query["offset"], query.get("category"))


@blp.route("/queue/claim", methods=["POST"])
@blp.arguments(ClaimSchema)
@blp.response(200, DeskTicketSchema, description="The ticket, now assigned to the agent.")
@blp.alt_response(204, description="Nothing in the queue that this agent may take.")
@blp.alt_response(404, description="No such agent.")
@blp.alt_response(409, description="The agent is inactive or at capacity.")
def claim_ticket(body):
    """Give an agent the most urgent waiting ticket it may take, atomically."""
    with answering_errors("nothing was claimed"):
        ticket = desk().claim(body["agent_id"])
    if ticket is None:
        return "", 204
    return ticket
