"""The circuit breaker on its own (a fake clock), then wired into the service."""
import pytest

from smart_support import create_app
from smart_support.inference.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(failure_threshold=3, latency_budget=0.5, reset_after=30, clock=clock)


def fail(breaker, times=1):
    for _ in range(times):
        assert breaker.allow()
        breaker.record(0.01, RuntimeError("boom"))


def test_three_failures_in_a_row_open_the_breaker(breaker):
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    assert not breaker.allow()


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    assert breaker.allow()
    breaker.record(0.01)
    fail(breaker, 2)
    assert breaker.state == CLOSED


def test_slow_calls_count_as_failures(breaker):
    for _ in range(3):
        assert breaker.allow()
        breaker.record(0.9)
    assert breaker.state == OPEN
    assert "slow" in breaker.snapshot()["last_failure"]


def test_the_budget_scales_with_batched_work(breaker):
    for _ in range(3):
        breaker.allow()
        breaker.record(0.9, budget_units=2)
    assert breaker.state == CLOSED


def test_after_the_reset_interval_one_probe_is_let_through(breaker, clock):
    fail(breaker, 3)
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()
    assert breaker.state == HALF_OPEN
    assert not breaker.allow(), "only one probe at a time"


def test_a_successful_probe_closes_and_a_failed_one_reopens(breaker, clock):
    fail(breaker, 3)
    clock.now += 31
    assert breaker.allow()
    breaker.record(0.9)
    assert breaker.state == OPEN
    assert breaker.snapshot()["retry_in_seconds"] == 30
    clock.now += 31
    assert breaker.allow()
    breaker.record(0.01)
    assert breaker.state == CLOSED


def test_transitions_are_reported(clock):
    seen = []
    breaker = CircuitBreaker(3, 0.5, 30, clock=clock,
                             on_transition=lambda old, new, why: seen.append((old, new)))
    fail(breaker, 3)
    clock.now += 31
    breaker.allow()
    breaker.record(0.01)
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_a_classifier_that_raises_is_replaced_by_the_baseline(trained_model_dir, monkeypatch):
    app = create_app({"model_dir": trained_model_dir, "breaker_reset_seconds": 3600})
    service = app.extensions["smart_support"]

    def broken(tickets):
        raise RuntimeError("CUDA? no: a corrupted weight")

    monkeypatch.setattr(service.predictor, "predict", broken)
    client = app.test_client()
    ticket = {"description": "I was charged twice, please refund"}
    answers = [client.post("/classify", json=ticket) for _ in range(4)]
    assert all(a.status_code == 200 for a in answers)
    bodies = [a.get_json() for a in answers]
    assert all(b["model"] == "baseline" and b["degraded"] for b in bodies)
    assert bodies[0]["category"] in bodies[0]["scores"]
    ready = client.get("/ready").get_json()
    assert ready["degraded"] is True
    assert ready["breaker"]["state"] == OPEN
    assert ready["breaker"]["last_failure"] == "error: RuntimeError"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'smart_support_answers_total{model="baseline"}' in metrics


def test_the_transformer_answers_again_after_a_successful_probe(trained_model_dir, monkeypatch):
    app = create_app({"model_dir": trained_model_dir, "breaker_reset_seconds": 0})
    service = app.extensions["smart_support"]
    real_predict = service.predictor.predict
    monkeypatch.setattr(service.predictor, "predict",
                        lambda tickets: (_ for _ in ()).throw(RuntimeError("down")))
    client = app.test_client()
    for _ in range(3):
        assert client.post("/classify", json={"description": "x"}).get_json()["model"] == "baseline"
    monkeypatch.setattr(service.predictor, "predict", real_predict)
    body = client.post("/classify", json={"description": "x"}).get_json()
    assert (body["model"], body["degraded"]) == ("transformer", False)
    assert service.breaker.state == CLOSED
