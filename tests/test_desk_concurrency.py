"""Concurrency on SQLite and PostgreSQL: 50 agents claiming at once never get the same ticket,
50 identical submissions at once create one ticket, and capacity holds under a crowd.

Two levels: 50 threads released together against one app (each thread its own connection),
and 50 HTTP clients against gunicorn with two worker processes (separate processes and
connection pools racing on the same database)."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from smart_support.storage import agents, tickets

CROWD = 50


def at_once(count: int, work):
    """Run work(i) in `count` threads released by one barrier; results in index order."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def desk_app(make_desk_app):
    return make_desk_app(auto_assign=False)


def count_rows(app, table, *where) -> int:
    with app.extensions["smart_support_storage"].engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(*where)) \
            .scalar_one()


def test_fifty_agents_claiming_at_once_never_get_the_same_ticket(desk_app):
    client = desk_app.test_client()
    for i in range(30):
        assert client.post("/tickets", json={"ticket_id": f"T-{i}",
                                             "description": f"ticket number {i}"}).status_code == 201
    staff = [client.post("/agents", json={"name": f"agent {i}", "capacity": 1, "skills": {
        "Billing": 1, "Technical": 1, "Legal": 1}}).get_json()["id"] for i in range(CROWD)]

    def claim(i):
        response = desk_app.test_client().post("/queue/claim", json={"agent_id": staff[i]})
        return response.status_code, response.get_json() if response.status_code == 200 else None

    results = at_once(CROWD, claim)
    claimed = [body["ticket_id"] for status, body in results if status == 200]
    assert sorted(status for status, _ in results) == [200] * 30 + [204] * 20
    assert len(claimed) == len(set(claimed)) == 30
    assert count_rows(desk_app, tickets, tickets.c.status == "queued") == 0
    # every agent's load matches the tickets it holds
    assert count_rows(desk_app, agents, agents.c.load == 1) == 30


def test_one_agent_claiming_fifty_times_at_once_stops_at_its_capacity(desk_app):
    client = desk_app.test_client()
    for i in range(20):
        client.post("/tickets", json={"description": f"ticket {i}"})
    agent = client.post("/agents", json={"name": "busy", "capacity": 7, "skills": {
        "Billing": 1, "Technical": 1, "Legal": 1}}).get_json()["id"]
    results = at_once(CROWD, lambda i: desk_app.test_client().post(
        "/queue/claim", json={"agent_id": agent}).status_code)
    assert results.count(200) == 7 and results.count(409) == CROWD - 7
    assert client.get(f"/agents/{agent}").get_json()["load"] == 7


def test_fifty_identical_submissions_at_once_create_one_ticket(desk_app):
    body = {"ticket_id": "SAME-1", "subject": "Charged twice", "description": "Refund please"}
    results = at_once(CROWD, lambda i: desk_app.test_client().post("/tickets", json=body))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * (CROWD - 1) + [201]
    assert len({r.get_json()["created_at"] for r in results}) == 1
    assert count_rows(desk_app, tickets) == 1


@pytest.mark.e2e
def test_two_gunicorn_workers_under_fifty_clients_keep_claims_and_submissions_unique(
        trained_model_dir, database_url, tmp_path):
    from test_e2e import call, gunicorn

    with gunicorn(trained_model_dir, tmp_path, database_url=database_url,
                  auto_assign="false") as (base, _):
        for i in range(20):
            assert call(base + "/tickets", {"ticket_id": f"Q-{i}",
                                            "description": f"queued ticket {i}"})[0] == 201
        staff = [json.loads(call(base + "/agents", {
            "name": f"agent {i}", "capacity": 1,
            "skills": {"Billing": 1, "Technical": 1, "Legal": 1}})[1])["id"]
            for i in range(CROWD)]
        claims = at_once(CROWD, lambda i: call(base + "/queue/claim", {"agent_id": staff[i]}))
        claimed = [json.loads(body)["ticket_id"] for status, body in claims if status == 200]
        assert len(claimed) == len(set(claimed)) == 20
        assert sorted(status for status, _ in claims) == [200] * 20 + [204] * 30

        same = {"ticket_id": "DUP-1", "description": "the export button does nothing"}
        submissions = at_once(CROWD, lambda i: call(base + "/tickets", same))
        assert sorted(status for status, _ in submissions) == [200] * (CROWD - 1) + [201]
        queue = json.loads(call(base + "/queue?limit=500")[1])
        assert [t["ticket_id"] for t in queue["tickets"]] == ["DUP-1"]
