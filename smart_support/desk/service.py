"""The desk's operations: each is one serialized database transaction (Storage.desk_transaction),
so that idempotent submission, storm decisions, claims and capacity hold across every thread,
worker and host. Model work (triage, embedding) runs before the transaction, never inside it.

Ticket states: queued -> assigned -> resolved; requeue returns an assigned or resolved ticket to
the queue. A ticket linked to an incident stays in the queue like any other; resolving the
incident resolves its tickets.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, insert, select, update

from smart_support.alerts.payload import incident_alert, preview, ticket_alert
from smart_support.desk.assignment import choose_agent, claimable_categories
from smart_support.desk.storm import (
    Decision, StormPolicy, Window, decide, from_bytes, joined, to_bytes,
)
from smart_support.inference.predictor import Ticket
from smart_support.metrics import DESK_EVENTS, observe_triage
from smart_support.storage import agents, incidents, prediction_row, tickets

log = logging.getLogger(__name__)

QUEUED, ASSIGNED, RESOLVED = "queued", "assigned", "resolved"
OPEN = "open"
DISPATCH_SCAN = 1_000  # queued tickets looked at per dispatch pass
INCIDENT_TICKETS_SHOWN = 1_000


class DeskError(Exception):
    """A request the desk refuses; `status` is the HTTP status the web layer answers with."""

    status = 422

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class NotFound(DeskError):
    status = 404


class Conflict(DeskError):
    status = 409


def fingerprint(subject: str, description: str) -> str:
    return hashlib.sha256(f"{subject}\x00{description}".encode()).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value and value.tzinfo is None else value


def _system_clock() -> datetime:
    return datetime.now(timezone.utc)


class Desk:
    def __init__(self, storage, service, settings, outbox=None, embedder=None,
                 clock=_system_clock):
        self.storage = storage
        self.service = service  # TriageService
        self.settings = settings
        self.outbox = outbox
        self.embedder = embedder
        self.clock = clock
        self.policy = StormPolicy(
            settings.storm_similarity, settings.storm_count, settings.storm_window_seconds,
            min_lift=settings.storm_min_lift, copy_similarity=settings.storm_copy_similarity,
            min_history=settings.storm_min_history,
            join_similarity=settings.storm_join_similarity) if embedder else None
        self.window = Window(embedder.dimension) if embedder else None
        self._window_lock = threading.Lock()

    # -- tickets ------------------------------------------------------------------------

    def submit(self, ticket_id: str | None, subject: str, description: str) -> tuple[dict, bool]:
        """Classify, store and enqueue a ticket. Returns (ticket, created): the same
        ticket_id again gives back the stored ticket (created False), never a second one."""
        if ticket_id:
            with self.storage.engine.connect() as conn:
                existing = self._row(conn, ticket_id, missing_ok=True)
            if existing:  # a retry: answer without running the models again
                return self._replayed(existing, subject, description), False
        ticket = Ticket(subject, description)
        (result,), timings = self.service.triage([ticket])
        observe_triage([result], timings)
        vector = self._embed(ticket)
        with self.storage.desk_transaction() as conn:
            if ticket_id:
                existing = self._row(conn, ticket_id, missing_ok=True)
                if existing:
                    return self._replayed(existing, subject, description), False
            else:
                ticket_id = f"tk_{uuid.uuid4().hex[:24]}"
            now = self.clock()
            decision = self._storm_decision(conn, vector, now) if vector is not None \
                else Decision()
            row_id = conn.execute(insert(tickets), {
                "ticket_id": ticket_id, "fingerprint": fingerprint(subject, description),
                "subject": subject, "description": description, "category": result.category,
                "model_category": result.model_category, "confidence": result.confidence,
                "urgency": result.urgency_score, "needs_review": result.needs_review,
                "override": result.override, "model": result.model,
                "model_version": self.service.model_version, "status": QUEUED,
                "embedding": to_bytes(vector) if vector is not None else None,
                "requeues": 0, "created_at": now, "updated_at": now,
            }).inserted_primary_key[0]
            if self.settings.record_predictions:
                # the prediction log behind drift, and what POST /feedback finds by ticket_id
                self.storage.record_predictions([prediction_row(
                    ticket_id, subject, description, result, self.service.model_version)], conn)
            alert = None
            if decision.join_incident is not None:
                self._join_incident(conn, decision.join_incident, row_id, vector, now)
            elif decision.opens_incident:
                self._open_incident(conn, [*decision.open_with, row_id], decision,
                                    subject, description, now)
            elif self.outbox is not None and result.urgency_score > self.settings.alert_threshold:
                alert = self.outbox.record(
                    ticket_alert(ticket_id, subject, description, result,
                                 self.service.model_version), conn)
                if alert["id"]:
                    conn.execute(update(tickets).where(tickets.c.id == row_id)
                                 .values(alert_id=alert["id"]))
            if self.settings.auto_assign:
                self._dispatch(conn, now, only=row_id)
            stored = self._row(conn, ticket_id)
        DESK_EVENTS.labels("created").inc()
        return {**self._public(stored), "alert": alert}, True

    def get(self, ticket_id: str) -> dict:
        with self.storage.engine.connect() as conn:
            return self._public(self._row(conn, ticket_id))

    def queue(self, limit: int, offset: int = 0, category: str | None = None) -> dict:
        """Waiting tickets, most urgent first, then oldest first."""
        return self.ticket_list(limit, offset, status=QUEUED, category=category)

    def ticket_list(self, limit: int, offset: int = 0, status: str | None = None,
                    category: str | None = None, agent_id: int | None = None,
                    incident_id: int | None = None) -> dict:
        """Tickets matching every filter given; waiting ones by urgency then age, the others
        newest first."""
        where = [column == value for column, value in (
            (tickets.c.status, status), (tickets.c.category, category),
            (tickets.c.agent_id, agent_id), (tickets.c.incident_id, incident_id))
            if value is not None]
        order = (tickets.c.urgency.desc(), tickets.c.id) if status == QUEUED \
            else (tickets.c.id.desc(),)
        query = select(tickets).where(*where).order_by(*order).limit(limit).offset(offset)
        with self.storage.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            total = conn.execute(select(func.count()).select_from(tickets)
                                 .where(*where)).scalar_one()
        return {"tickets": [self._public(r) for r in rows], "total": int(total),
                "limit": limit, "offset": offset}

    def claim(self, agent_id: int) -> dict | None:
        """Give the agent the most urgent waiting ticket it may take, atomically; None when
        there is none."""
        with self.storage.desk_transaction() as conn:
            agent = self._agent(conn, agent_id, field="agent_id")
            if not agent["active"]:
                raise Conflict(f"Agent {agent_id} is inactive.", {"agent_id": ["Inactive."]})
            if agent["load"] >= agent["capacity"]:
                raise Conflict(f"Agent {agent_id} is at capacity ({agent['capacity']} open "
                               "tickets).", {"agent_id": ["At capacity."]})
            categories = claimable_categories(agent)
            if not categories:
                return None
            row = conn.execute(
                select(tickets.c.id, tickets.c.ticket_id)
                .where(tickets.c.status == QUEUED, tickets.c.category.in_(categories))
                .order_by(tickets.c.urgency.desc(), tickets.c.id).limit(1)).first()
            if row is None:
                return None
            self._assign(conn, row.id, agent_id, self.clock())
            DESK_EVENTS.labels("claimed").inc()
            return self._public(self._row(conn, row.ticket_id))

    def resolve(self, ticket_id: str, resolution: str | None = None) -> dict:
        """Close a ticket (resolving a resolved ticket changes nothing)."""
        with self.storage.desk_transaction() as conn:
            row = self._row(conn, ticket_id)
            if row["status"] == RESOLVED:
                return self._public(row)
            now = self.clock()
            self._release(conn, row, now)
            conn.execute(update(tickets).where(tickets.c.id == row["id"]).values(
                status=RESOLVED, agent_id=row["agent_id"], resolution=resolution,
                resolved_at=now, updated_at=now))
            if self.settings.auto_assign and row["status"] == ASSIGNED:
                self._dispatch(conn, now)
            DESK_EVENTS.labels("resolved").inc()
            return self._public(self._row(conn, ticket_id))

    def requeue(self, ticket_id: str, reason: str | None = None) -> dict:
        """Return an assigned (or reopen a resolved) ticket to the queue."""
        with self.storage.desk_transaction() as conn:
            row = self._row(conn, ticket_id)
            if row["status"] == QUEUED:
                raise Conflict(f"Ticket {ticket_id} is already waiting in the queue.")
            now = self.clock()
            self._release(conn, row, now)
            conn.execute(update(tickets).where(tickets.c.id == row["id"]).values(
                status=QUEUED, agent_id=None, assigned_at=None, resolved_at=None,
                resolution=reason, requeues=tickets.c.requeues + 1, updated_at=now))
            if self.settings.auto_assign:
                # whoever gave the ticket back does not get it again in the same breath
                returned_by = {row["id"]: frozenset({row["agent_id"]})} if row["agent_id"] \
                    else {}
                self._dispatch(conn, now, exclude=returned_by)
            DESK_EVENTS.labels("requeued").inc()
            return self._public(self._row(conn, ticket_id))

    # -- agents -------------------------------------------------------------------------

    def add_agent(self, name: str, skills: dict, capacity: int, active: bool = True) -> dict:
        with self.storage.desk_transaction() as conn:
            now = self.clock()
            agent_id = conn.execute(insert(agents), {
                "name": name, "skills": skills, "capacity": capacity, "active": active,
                "load": 0, "created_at": now, "updated_at": now}).inserted_primary_key[0]
            if self.settings.auto_assign:
                self._dispatch(conn, now)
            return self._public_agent(self._agent(conn, agent_id))

    def agent(self, agent_id: int) -> dict:
        with self.storage.engine.connect() as conn:
            return self._public_agent(self._agent(conn, agent_id))

    def agent_list(self, limit: int, offset: int = 0, active: bool | None = None) -> dict:
        where = [] if active is None else [agents.c.active.is_(active)]
        with self.storage.engine.connect() as conn:
            rows = conn.execute(select(agents).where(*where).order_by(agents.c.id)
                                .limit(limit).offset(offset)).mappings().all()
            total = conn.execute(select(func.count()).select_from(agents)
                                 .where(*where)).scalar_one()
        return {"agents": [self._public_agent(r) for r in rows], "total": int(total),
                "limit": limit, "offset": offset}

    def update_agent(self, agent_id: int, changes: dict) -> dict:
        """Change name, skills, capacity or active. Going inactive returns the agent's open
        tickets to the queue, where other agents can get them."""
        with self.storage.desk_transaction() as conn:
            agent = self._agent(conn, agent_id)
            now = self.clock()
            values = dict(changes, updated_at=now)
            if changes.get("active") is False and agent["active"]:
                conn.execute(update(tickets).where(tickets.c.agent_id == agent_id,
                                                   tickets.c.status == ASSIGNED)
                             .values(status=QUEUED, agent_id=None, assigned_at=None,
                                     requeues=tickets.c.requeues + 1, updated_at=now))
                values["load"] = 0
            conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))
            if self.settings.auto_assign:
                self._dispatch(conn, now)
            return self._public_agent(self._agent(conn, agent_id))

    # -- incidents ----------------------------------------------------------------------

    def incident_list(self, limit: int, offset: int = 0, status: str | None = None) -> dict:
        where = [incidents.c.status == status] if status else []
        with self.storage.engine.connect() as conn:
            rows = conn.execute(select(incidents).where(*where).order_by(incidents.c.id.desc())
                                .limit(limit).offset(offset)).mappings().all()
            total = conn.execute(select(func.count()).select_from(incidents)
                                 .where(*where)).scalar_one()
        return {"incidents": [self._public_incident(r) for r in rows], "total": int(total),
                "limit": limit, "offset": offset}

    def incident(self, incident_id: int) -> dict:
        with self.storage.engine.connect() as conn:
            return self._incident_with_tickets(conn, incident_id)

    def resolve_incident(self, incident_id: int, resolution: str | None = None) -> dict:
        """Close the incident and every ticket of it that is still open."""
        with self.storage.desk_transaction() as conn:
            incident = self._incident_row(conn, incident_id)
            if incident["status"] != OPEN:
                return self._incident_with_tickets(conn, incident_id)
            now = self.clock()
            open_rows = conn.execute(select(tickets).where(
                tickets.c.incident_id == incident_id,
                tickets.c.status != RESOLVED)).mappings().all()
            for row in open_rows:
                self._release(conn, row, now)
            conn.execute(update(tickets).where(tickets.c.incident_id == incident_id,
                                               tickets.c.status != RESOLVED)
                         .values(status=RESOLVED, resolution=resolution, resolved_at=now,
                                 updated_at=now))
            conn.execute(update(incidents).where(incidents.c.id == incident_id).values(
                status=RESOLVED, resolved_at=now, resolution=resolution))
            if self.settings.auto_assign:
                self._dispatch(conn, now)
            return self._incident_with_tickets(conn, incident_id)

    # -- storm detection ----------------------------------------------------------------

    def _embed(self, ticket: Ticket):
        if self.embedder is None:
            return None
        try:
            return self.embedder.embed([ticket])[0]
        except Exception:  # noqa: BLE001 - the ticket is still accepted, without storm check
            log.exception("embedding failed; ticket stored without storm detection")
            return None

    def _storm_decision(self, conn, vector, now: datetime) -> Decision:
        with self._window_lock:
            # the window keeps hours of history: the usual rate of each topic
            oldest = now - timedelta(seconds=self.settings.storm_history_seconds)
            self._sync_window(conn, oldest)
            # tickets of the last minutes already in an incident: found through the incidents
            # active in those minutes (indexed), not by scanning every recent ticket
            recent = now - timedelta(seconds=self.policy.window_seconds)
            active = select(incidents.c.id).where(incidents.c.last_ticket_at >= recent)
            linked = set(conn.execute(select(tickets.c.id).where(
                tickets.c.incident_id.in_(active),
                tickets.c.created_at >= recent)).scalars())
            quiet = now - timedelta(seconds=self.settings.incident_quiet_seconds)
            open_incidents = {
                r.id: from_bytes(r.centroid) for r in conn.execute(
                    select(incidents.c.id, incidents.c.centroid).where(
                        incidents.c.status == OPEN, incidents.c.last_ticket_at >= quiet))}
            return decide(vector, self.window, linked, open_incidents, self.policy,
                          now.timestamp())

    def _sync_window(self, conn, oldest: datetime) -> None:
        """Bring this process's copy of the window up to date with committed tickets from
        every worker: only rows newer than the last one it holds are read."""
        # after the first read, only rows past the last id (a primary-key range); filtering on
        # created_at as well would let the planner scan the whole window through its index
        newer = tickets.c.id > self.window.last_id if len(self.window) \
            else tickets.c.created_at >= oldest
        rows = conn.execute(
            select(tickets.c.id, tickets.c.created_at, tickets.c.embedding)
            .where(newer, tickets.c.embedding.is_not(None)).order_by(tickets.c.id))
        for row in rows:
            self.window.add(row.id, _utc(row.created_at).timestamp(), from_bytes(row.embedding))
        self.window.evict_before(oldest.timestamp())
        overflow = len(self.window) - self.settings.storm_window_max
        if overflow > 0:  # a flood beyond the bound: the oldest tickets leave early
            self.window.start += overflow

    def _join_incident(self, conn, incident_id: int, row_id: int, vector, now) -> None:
        incident = self._incident_row(conn, incident_id)
        DESK_EVENTS.labels("incident_joined").inc()
        conn.execute(update(tickets).where(tickets.c.id == row_id)
                     .values(incident_id=incident_id))
        conn.execute(update(incidents).where(incidents.c.id == incident_id).values(
            ticket_count=incidents.c.ticket_count + 1, last_ticket_at=now,
            centroid=to_bytes(joined(from_bytes(incident["centroid"]),
                                     incident["ticket_count"], vector))))

    def _open_incident(self, conn, member_ids: list[int], decision: Decision, subject,
                       description, now) -> int:
        members = conn.execute(select(tickets.c.id, tickets.c.category, tickets.c.alert_id)
                               .where(tickets.c.id.in_(member_ids))).all()
        category = Counter(m.category for m in members).most_common(1)[0][0]
        title = preview(subject, description)[:160]
        incident_id = conn.execute(insert(incidents), {
            "status": OPEN, "title": title, "category": category,
            "ticket_count": len(members), "centroid": to_bytes(decision.centroid),
            "created_at": now, "last_ticket_at": now}).inserted_primary_key[0]
        conn.execute(update(tickets).where(tickets.c.id.in_(member_ids),
                                           tickets.c.incident_id.is_(None))
                     .values(incident_id=incident_id, updated_at=now))
        DESK_EVENTS.labels("incident_opened").inc()
        withdrawn = 0
        if self.outbox is not None:
            withdrawn = self.outbox.suppress([m.alert_id for m in members if m.alert_id], conn)
            alert = self.outbox.record(incident_alert(incident_id, category, len(members),
                                                      subject, description), conn)
            conn.execute(update(incidents).where(incidents.c.id == incident_id)
                         .values(alert_id=alert["id"]))
        log.info("incident %s opened with %d tickets, each at cosine >= %.2f to the last "
                 "(%d earlier alerts withdrawn)", incident_id, len(members),
                 decision.similarity, withdrawn)
        return incident_id

    # -- assignment ---------------------------------------------------------------------

    def _dispatch(self, conn, now, only: int | None = None,
                  exclude: dict[int, frozenset] | None = None) -> None:
        """Give waiting tickets (or just ticket `only`) to the best fitting agents."""
        staff = [dict(r) for r in conn.execute(select(agents)).mappings()]
        if not any(claimable_categories(a) for a in staff):
            return
        where = [tickets.c.status == QUEUED] + ([tickets.c.id == only] if only else [])
        waiting = conn.execute(select(tickets.c.id, tickets.c.category).where(*where)
                               .order_by(tickets.c.urgency.desc(), tickets.c.id)
                               .limit(DISPATCH_SCAN)).all()
        margin = self.settings.assignment_skill_margin
        for ticket in waiting:
            agent = choose_agent(ticket.category, staff, margin,
                                 (exclude or {}).get(ticket.id, frozenset()))
            if agent is not None:
                self._assign(conn, ticket.id, agent["id"], now)
                agent["load"] += 1
                if not any(claimable_categories(a) for a in staff):
                    return

    def _assign(self, conn, row_id: int, agent_id: int, now) -> None:
        took = conn.execute(update(agents).where(
            agents.c.id == agent_id, agents.c.active.is_(True),
            agents.c.load < agents.c.capacity).values(load=agents.c.load + 1)).rowcount
        moved = conn.execute(update(tickets).where(
            tickets.c.id == row_id, tickets.c.status == QUEUED).values(
            status=ASSIGNED, agent_id=agent_id, assigned_at=now, updated_at=now)).rowcount
        if took != 1 or moved != 1:  # cannot happen under the desk lock; never half-assign
            raise RuntimeError(f"assignment of ticket row {row_id} to agent {agent_id} raced")
        DESK_EVENTS.labels("assigned").inc()

    @staticmethod
    def _release(conn, row, now) -> None:
        if row["status"] == ASSIGNED and row["agent_id"] is not None:
            conn.execute(update(agents).where(agents.c.id == row["agent_id"],
                                              agents.c.load > 0)
                         .values(load=agents.c.load - 1, updated_at=now))

    # -- rows -----------------------------------------------------------------------------

    @staticmethod
    def _row(conn, ticket_id: str, missing_ok: bool = False):
        row = conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id)) \
            .mappings().first()
        if row is None and not missing_ok:
            raise NotFound(f"No ticket with ticket_id {ticket_id!r}.",
                           {"ticket_id": ["Unknown ticket."]})
        return row

    @staticmethod
    def _agent(conn, agent_id: int, field: str = "id") -> dict:
        row = conn.execute(select(agents).where(agents.c.id == agent_id)).mappings().first()
        if row is None:
            raise NotFound(f"No agent with id {agent_id}.", {field: ["Unknown agent."]})
        return dict(row)

    @staticmethod
    def _incident_row(conn, incident_id: int):
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)) \
            .mappings().first()
        if row is None:
            raise NotFound(f"No incident with id {incident_id}.", {"id": ["Unknown incident."]})
        return row

    def _incident_with_tickets(self, conn, incident_id: int) -> dict:
        incident = self._public_incident(self._incident_row(conn, incident_id))
        incident["ticket_ids"] = list(conn.execute(
            select(tickets.c.ticket_id).where(tickets.c.incident_id == incident_id)
            .order_by(tickets.c.id).limit(INCIDENT_TICKETS_SHOWN)).scalars())
        return incident

    def _replayed(self, row, subject: str, description: str) -> dict:
        if row["fingerprint"] != fingerprint(subject, description):
            raise Conflict(f"ticket_id {row['ticket_id']!r} was already used for a ticket "
                           "with a different subject or description.",
                           {"ticket_id": ["Already used for a different ticket."]})
        DESK_EVENTS.labels("replayed").inc()
        return {**self._public(row), "alert": None}

    @staticmethod
    def _public(row) -> dict:
        return {
            "ticket_id": row["ticket_id"], "subject": row["subject"],
            "description": row["description"], "category": row["category"],
            "urgency_score": round(row["urgency"], 4), "confidence": round(row["confidence"], 4),
            "model_category": row["model_category"], "override": row["override"],
            "needs_review": row["needs_review"], "model": row["model"],
            "model_version": row["model_version"], "status": row["status"],
            "agent_id": row["agent_id"], "incident_id": row["incident_id"],
            "alert_id": row["alert_id"], "requeues": row["requeues"],
            "resolution": row["resolution"],
            **{k: _utc(row[k]) for k in ("created_at", "updated_at", "assigned_at",
                                          "resolved_at")},
        }

    @staticmethod
    def _public_agent(row) -> dict:
        return {"id": row["id"], "name": row["name"], "skills": row["skills"],
                "capacity": row["capacity"], "active": row["active"], "load": row["load"],
                "created_at": _utc(row["created_at"]), "updated_at": _utc(row["updated_at"])}

    @staticmethod
    def _public_incident(row) -> dict:
        return {"id": row["id"], "status": row["status"], "title": row["title"],
                "category": row["category"], "ticket_count": row["ticket_count"],
                "alert_id": row["alert_id"], "created_at": _utc(row["created_at"]),
                "last_ticket_at": _utc(row["last_ticket_at"]),
                "resolved_at": _utc(row["resolved_at"]), "resolution": row["resolution"]}
