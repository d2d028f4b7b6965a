"""The prediction log is written in batches, yet nothing in it is lost quietly or found late."""
import sqlite3
import threading
import time

import pytest

from smart_support.metrics import PREDICTION_LOG_DROPPED
from smart_support.prediction_log import PredictionLog
from smart_support.storage import Storage


def row(ticket_id, description="my card was charged twice"):
    return {"ticket_id": ticket_id, "subject": "billing", "description": description,
            "category": "Billing", "model_category": "Billing", "confidence": 0.9,
            "urgency": 0.5, "needs_review": False, "model": "transformer",
            "model_version": "v-test"}


@pytest.fixture
def storage(tmp_path):
    storage = Storage(f"sqlite:///{tmp_path / 'log.db'}")
    storage.migrate()
    yield storage
    storage.engine.dispose()


def logged_ids(storage):
    with storage.engine.connect() as connection:
        return [r[0] for r in connection.exec_driver_sql(
            "SELECT ticket_id FROM predictions ORDER BY id")]


def dropped():
    return PREDICTION_LOG_DROPPED._value.get()


def test_rows_reach_the_database_within_the_flush_interval_without_being_asked(storage):
    log = PredictionLog(storage, flush_seconds=0.05)
    log.append([row("A"), row("B")])
    deadline = time.monotonic() + 5
    while logged_ids(storage) != ["A", "B"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logged_ids(storage) == ["A", "B"]
    log.close()


def test_the_writer_wakes_again_for_rows_that_come_after_a_quiet_spell(storage):
    log = PredictionLog(storage, flush_seconds=0.02)
    for expected in (["A"], ["A", "B"], ["A", "B", "C"]):
        log.append([row(expected[-1])])
        deadline = time.monotonic() + 5
        while logged_ids(storage) != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert logged_ids(storage) == expected
        time.sleep(0.1)  # the writer goes back to sleep with nothing to write
    log.close()


def test_a_row_appended_while_the_writer_is_writing_is_written_without_being_asked(storage):
    # append() wakes the writer only when its event is clear, so the writer must clear it
    # before it takes the rows: a row that arrives during a write is then written next time
    writing, release = threading.Event(), threading.Event()
    record = storage.record_predictions

    def slow_first_write(rows, connection=None):
        if not writing.is_set():
            writing.set()
            release.wait(5)
        record(rows, connection)

    storage.record_predictions = slow_first_write
    log = PredictionLog(storage, flush_seconds=0.01)
    log.append([row("A")])
    assert writing.wait(5)
    log.append([row("B")])  # the writer is inside its first write
    release.set()
    deadline = time.monotonic() + 5
    while logged_ids(storage) != ["A", "B"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logged_ids(storage) == ["A", "B"]
    log.close()


def test_an_unbatched_log_writes_before_append_returns(storage):
    log = PredictionLog(storage, flush_seconds=0)
    log.append([row("A")])
    assert logged_ids(storage) == ["A"]
    assert log.miss_wait_seconds == 0


def test_closing_writes_what_is_waiting_in_answer_order(storage):
    log = PredictionLog(storage, flush_seconds=10)  # the writer would not wake in this test
    log.append([row("first")])
    log.append([row("second"), row("third")])
    log.close()
    assert logged_ids(storage) == ["first", "second", "third"]


def test_a_lookup_finds_a_ticket_still_waiting_in_another_worker(storage):
    other_worker = PredictionLog(storage, flush_seconds=0.05)
    this_worker = PredictionLog(storage, flush_seconds=0.05)
    other_worker.append([row("T-1", "the export button crashes")])
    found = this_worker.latest_ticket("T-1")
    assert found is not None and found["description"] == "the export button crashes"
    other_worker.close()


def test_a_lookup_that_misses_gives_up_after_its_bounded_wait(storage):
    log = PredictionLog(storage, flush_seconds=0.05)
    started = time.monotonic()
    assert log.latest_ticket("never-classified") is None
    waited = time.monotonic() - started
    assert log.miss_wait_seconds <= waited < log.miss_wait_seconds + 2


def test_rows_that_storage_refuses_are_counted_and_logged_not_raised(caplog):
    class BrokenStorage:
        def record_predictions(self, rows):
            raise sqlite3.OperationalError("disk I/O error")

    log = PredictionLog(BrokenStorage(), flush_seconds=10)
    before = dropped()
    log.append([row("A"), row("B")])
    log.flush()
    assert dropped() - before == 2
    assert "2 row(s) not written: storage failed" in caplog.text


def test_rows_beyond_the_queue_limit_are_counted_as_dropped(storage, caplog):
    log = PredictionLog(storage, flush_seconds=10, max_pending=3)
    before = dropped()
    log.append([row("A"), row("B")])
    log.append([row("C"), row("D"), row("E")])
    assert dropped() - before == 2
    assert "the queue is full" in caplog.text
    log.close()
    assert logged_ids(storage) == ["A", "B", "C"]


def test_a_read_then_write_transaction_is_not_overtaken_by_the_log_writer(storage):
    from sqlalchemy import select

    from smart_support.storage import predictions

    log = PredictionLog(storage, flush_seconds=10)
    log.append([row("from the log")])
    with storage.write_transaction() as connection:
        connection.execute(select(predictions)).all()
        writer = threading.Thread(target=log.flush)
        writer.start()
        writer.join(0.3)
        assert writer.is_alive(), "the log writer must wait for the write lock"
        storage.record_predictions([row("read then written")], connection)
    writer.join(10)
    assert logged_ids(storage) == ["read then written", "from the log"]


def test_a_correction_finds_its_ticket_on_either_database(make_desk_app):
    app = make_desk_app(storm_enabled=False)
    client = app.test_client()
    answer = client.post("/classify", json={"ticket_id": "PG-1", "subject": "invoice",
                                            "description": "the invoice PDF export fails"})
    assert answer.status_code == 200
    response = client.post("/feedback", json={"ticket_id": "PG-1", "category": "Technical"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["predicted_category"] == answer.get_json()["category"]
    stored = app.extensions["smart_support_storage"].latest_ticket("PG-1")
    assert stored["description"] == "the invoice PDF export fails"
