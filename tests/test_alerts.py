"""Urgent-ticket alerts against a real HTTP receiver on 127.0.0.1: retries, dead letters,
replay, bursts, a hanging receiver, and a dispatcher killed with SIGKILL mid-delivery."""
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smart_support import create_app
from smart_support.alerts.dispatcher import Dispatcher
from smart_support.alerts.outbox import DEAD, DELIVERED, DELIVERING, Outbox
from smart_support.alerts.payload import alert_body, mask, parse_target
from smart_support.config import ConfigError, Settings
from smart_support.storage import Storage, database_url

SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook receiver: fails the first `fail_first` calls, or hangs while `hang` is set."""

    def __init__(self, fail_first=0):
        self.fail_first = fail_first
        self.hang = threading.Event()
        self.calls = 0
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                if receiver.hang.is_set():
                    time.sleep(5)
                    return
                if receiver.calls <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((self.headers, body))  # case-insensitive lookup
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self):
        return Counter(h["X-Smart-Support-Alert-Id"] for h, _ in self.received)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def outbox_for(tmp_path, url, **kw):
    storage = Storage(database_url(tmp_path, ""))
    storage.migrate()
    options = dict(max_pending=10_000, max_attempts=5, backoff_base=0.01, backoff_cap=0.05,
                   lease=2.0)
    options.update(kw)
    return Outbox(storage, (url,), **options)


def wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_personal_data_is_masked_in_the_preview():
    text = "Mail jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958 now"
    masked = mask(text)
    assert "jane" not in masked and "4111" not in masked and "7946" not in masked
    assert masked.count("[email]") == masked.count("[card]") == masked.count("[phone]") == 1


def test_receiver_formats_and_targets():
    assert parse_target("slack+https://hooks.example/x") == ("slack", "https://hooks.example/x")
    assert parse_target("https://example/x") == ("generic", "https://example/x")
    alert = {"id": "a1", "category": "Billing", "urgency": 0.93, "confidence": 0.8,
             "ticket_id": "T-1", "preview": "hi"}
    assert "T-1" in alert_body(alert, "slack")["text"]
    assert "content" in alert_body(alert, "discord")
    assert alert_body(alert, "generic")["id"] == "a1"
    with pytest.raises(ConfigError, match="WEBHOOK_URLS"):
        Settings.from_env({"SMART_SUPPORT_WEBHOOK_URLS": "ftp://nope"})


def test_an_urgent_ticket_is_recorded_before_the_answer_and_delivered_signed(
        trained_model_dir, tmp_path, receiver):
    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path,
                      "webhook_urls": (receiver.url,), "webhook_secret": SECRET,
                      "alert_threshold": 0.0})
    body = app.test_client().post("/classify", json={
        "ticket_id": "T-7",
        "description": "urgent: server down, error on every page, mail me at boss@corp.com"}
    ).get_json()
    assert body["alert"]["status"] == "queued"
    alert_id = body["alert"]["id"]
    assert wait_for(lambda: receiver.received)
    headers, raw = receiver.received[0]
    assert headers["X-Smart-Support-Alert-Id"] == alert_id
    expected = hmac.new(SECRET.encode(), headers["X-Smart-Support-Timestamp"].encode() + b"."
                        + raw, hashlib.sha256).hexdigest()
    assert headers["X-Smart-Support-Signature"] == "sha256=" + expected
    sent = json.loads(raw)
    assert (sent["id"], sent["ticket_id"], sent["category"]) == (alert_id, "T-7", body["category"])
    assert "boss@corp.com" not in sent["preview"]
    app.extensions["smart_support_alerts"].dispatcher.stop()


def test_a_failing_receiver_gets_each_alert_exactly_once_after_retries(tmp_path):
    receiver = Receiver(fail_first=3)
    try:
        outbox = outbox_for(tmp_path, receiver.url)
        alert_id = outbox.enqueue({"category": "Legal", "urgency": 0.9, "confidence": 0.9,
                                   "ticket_id": None, "preview": "x"})
        dispatcher = Dispatcher(outbox, SECRET, timeout=2)
        assert wait_for(lambda: dispatcher.deliver_one() and False or bool(outbox.rows(DELIVERED)))
        assert receiver.ids() == Counter({alert_id: 1})
        assert receiver.calls == 4
        assert outbox.rows(DELIVERED)[0]["attempts"] == 3
    finally:
        receiver.close()


def test_a_dead_receiver_dead_letters_and_replay_delivers_later(tmp_path, trained_model_dir):
    receiver = Receiver(fail_first=10**6)
    try:
        outbox = outbox_for(tmp_path, receiver.url, max_attempts=3)
        alert_id = outbox.enqueue({"category": "Technical", "urgency": 0.95, "confidence": 0.7,
                                   "ticket_id": "T-2", "preview": "down"})
        dispatcher = Dispatcher(outbox, SECRET, timeout=2)
        assert wait_for(lambda: dispatcher.deliver_one() and False or bool(outbox.rows(DEAD)))
        dead = outbox.rows(DEAD)[0]
        assert dead["attempts"] == 3 and "503" in dead["last_error"]
        receiver.fail_first = 0
        assert outbox.replay(alert_id) == 1
        assert wait_for(lambda: dispatcher.deliver_one() and False or bool(outbox.rows(DELIVERED)))
        assert receiver.ids() == Counter({alert_id: 1})
    finally:
        receiver.close()


def test_admin_routes_list_and_replay_dead_alerts(trained_model_dir, tmp_path):
    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path,
                      "webhook_urls": ("http://127.0.0.1:9/closed",), "alert_threshold": 0.0,
                      "alert_max_attempts": 1, "alert_dispatcher": False})
    client = app.test_client()
    alert_id = client.post("/classify", json={"description": "outage"}).get_json()["alert"]["id"]
    outbox = app.extensions["smart_support_alerts"]
    Dispatcher(outbox, "", timeout=1).deliver_one()
    listed = client.get("/alerts?status=dead").get_json()["alerts"]
    assert [a["alert_id"] for a in listed] == [alert_id]
    assert client.post(f"/alerts/{alert_id}/replay").get_json() == {"alert_id": alert_id,
                                                                    "requeued": 1}
    assert client.post(f"/alerts/{alert_id}/replay").status_code == 404
    assert client.get("/alerts?status=sideways").status_code == 422


def test_a_burst_of_1000_gives_1000_distinct_deliveries_across_two_workers(tmp_path, receiver):
    outbox = outbox_for(tmp_path, receiver.url)
    ids = {outbox.enqueue({"category": "Billing", "urgency": 0.9, "confidence": 0.9,
                           "ticket_id": str(i), "preview": "p"}) for i in range(1000)}
    workers = [Dispatcher(outbox, SECRET, timeout=2, idle_sleep=0.01) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        assert wait_for(lambda: len(receiver.received) >= 1000, 120)
    finally:
        for worker in workers:
            worker.stop()
    assert set(receiver.ids()) == ids
    assert max(receiver.ids().values()) == 1, "no alert delivered twice"


def test_requests_stay_fast_while_the_receiver_hangs(trained_model_dir, tmp_path, receiver):
    receiver.hang.set()
    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path,
                      "webhook_urls": (receiver.url,), "alert_threshold": 0.0,
                      "alert_timeout_seconds": 3.0})
    client = app.test_client()
    assert client.post("/classify", json={"description": "down"}).status_code == 200
    assert wait_for(lambda: receiver.calls >= 1, 10), "the dispatcher never reached the receiver"
    timings = []
    for i in range(10):  # while the dispatcher waits on the hanging receiver
        started = time.perf_counter()
        body = client.post("/classify", json={"description": f"down {i}"}).get_json()
        timings.append(time.perf_counter() - started)
        assert body["alert"]["status"] == "queued"
    assert max(timings) < 1.0
    app.extensions["smart_support_alerts"].dispatcher.stop(wait=0)


def test_a_full_outbox_says_so_instead_of_dropping_silently(trained_model_dir, tmp_path):
    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path,
                      "webhook_urls": ("http://127.0.0.1:9/x",), "alert_threshold": 0.0,
                      "alert_outbox_max": 2, "alert_dispatcher": False})
    client = app.test_client()
    statuses = [client.post("/classify", json={"description": f"t{i}"}).get_json()["alert"]
                for i in range(3)]
    assert [s["status"] for s in statuses] == ["queued", "queued", "not_recorded"]
    assert "2 alerts are waiting" in statuses[2]["reason"]
    assert client.get("/ready").get_json()["alerts"] == {"waiting": 2, "limit": 2, "full": True}
    assert 'smart_support_alerts_total{outcome="not_recorded"}' in client.get("/metrics").get_data(as_text=True)


KILLED_DISPATCHER = """
import sys, time
from smart_support.alerts.dispatcher import Dispatcher
from smart_support.alerts.outbox import Outbox
from smart_support.storage import Storage
outbox = Outbox(Storage(sys.argv[1]), (sys.argv[2],), 100, 5, 0.01, 0.05, 2.0)
print("claiming", flush=True)
Dispatcher(outbox, "", timeout=1.5).deliver_one()
time.sleep(60)
"""


def test_a_dispatcher_killed_mid_delivery_loses_nothing(tmp_path):
    receiver = Receiver()
    receiver.hang.set()
    try:
        outbox = outbox_for(tmp_path, receiver.url, lease=2.0)
        alert_id = outbox.enqueue({"category": "Legal", "urgency": 0.99, "confidence": 0.9,
                                   "ticket_id": "K", "preview": "kill"})
        child = subprocess.Popen([sys.executable, "-c", KILLED_DISPATCHER, outbox.storage.url,
                                  receiver.url], stdout=subprocess.PIPE)
        assert wait_for(lambda: receiver.calls >= 1, 30), "the child never reached the receiver"
        assert outbox.rows()[0]["status"] == DELIVERING
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        receiver.hang.clear()
        dispatcher = Dispatcher(outbox, "", timeout=2)
        assert wait_for(lambda: dispatcher.deliver_one() and False or bool(outbox.rows(DELIVERED)),
                        15), "the lease never expired"
        assert receiver.ids() == Counter({alert_id: 1})
    finally:
        receiver.close()


def test_the_cli_lists_and_replays_dead_alerts(runner, tmp_path, monkeypatch):
    from smart_support.cli import main

    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(tmp_path))
    outbox = outbox_for(tmp_path, "http://127.0.0.1:9/closed", max_attempts=1)
    alert_id = outbox.enqueue({"category": "Billing", "urgency": 0.9, "confidence": 0.9,
                               "ticket_id": "C", "preview": "p"})
    Dispatcher(outbox, "", timeout=1).deliver_one()
    listed = runner.invoke(main, ["alerts", "list", "--status", "dead"])
    assert listed.exit_code == 0 and alert_id in listed.output
    assert runner.invoke(main, ["alerts", "replay", alert_id]).exit_code == 0
    again = runner.invoke(main, ["alerts", "replay", alert_id])
    assert again.exit_code != 0 and "no dead delivery" in again.output


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry))
    return pids


@pytest.mark.e2e
def test_a_gunicorn_worker_killed_mid_delivery_loses_nothing(trained_model_dir, tmp_path):
    from test_e2e import call, gunicorn

    receiver = Receiver()
    receiver.hang.set()
    try:
        with gunicorn(trained_model_dir, tmp_path, webhook_urls=receiver.url,
                      alert_threshold=0.0, alert_timeout_seconds=2,
                      alert_lease_seconds=3) as (base, process):
            status, text = call(base + "/classify", {"description": "everything is down"})
            assert status == 200
            alert_id = json.loads(text)["alert"]["id"]
            assert wait_for(lambda: receiver.calls >= 1, 30), "no delivery attempt"
            for pid in worker_pids(process.pid):  # every worker, the delivering one included
                os.kill(pid, signal.SIGKILL)
            receiver.hang.clear()
            assert wait_for(lambda: receiver.received, 90), "not delivered after the restart"
            time.sleep(1)
            assert receiver.ids() == Counter({alert_id: 1})
    finally:
        receiver.close()
