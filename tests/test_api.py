"""The HTTP contract: response fields, limits, and one error shape for every failure."""
import json

import pytest

from smart_support import create_app
from smart_support.inference.predictor import Prediction

TICKET = {"subject": "Payment deducted twice", "description": "Money was charged but order failed"}


def assert_error(response, code, field=None):
    assert response.status_code == code
    assert response.is_json
    body = response.get_json()
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert field in body["errors"], body
    return body


def test_classify_returns_the_seed_fields_and_the_explanation_fields(client, app):
    response = client.post("/classify", json={**TICKET, "ticket_id": "T-42"})
    assert response.status_code == 200
    body = response.get_json()
    labels = app.extensions["smart_support"].artifacts.labels
    assert body["category"] in labels
    assert 0.0 <= body["urgency_score"] <= 1.0
    assert 0.0 < body["latency_seconds"] < 5.0
    assert body["ticket_id"] == "T-42"
    assert set(body["scores"]) == set(labels)
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["confidence"] == body["scores"][body["category"]]
    assert body["model_category"] in labels
    assert body["model_version"] == app.extensions["smart_support"].model_version
    assert body["override"] is None or body["override"]["rule"] == "billing_keywords"


def test_subject_may_be_empty_or_missing_or_null(client):
    for ticket in ({"description": "cannot log in"}, {"subject": "", "description": "x"},
                   {"subject": None, "description": "x"}):
        assert client.post("/classify", json=ticket).status_code == 200


def test_override_reports_the_rule_and_matched_words(app, monkeypatch):
    service = app.extensions["smart_support"]
    unsure = {"Billing": 0.30, "Legal": 0.10, "Technical": 0.60}
    monkeypatch.setattr(service.predictor, "predict", lambda tickets: (
        [Prediction(dict(unsure), 0.5) for _ in tickets], {"forward": 0.0}))
    body = app.test_client().post("/classify", json={
        "description": "Please refund the double charge"}).get_json()
    assert body["category"] == "Billing"
    assert body["model_category"] == "Technical"
    assert body["confidence"] == 0.3
    assert body["override"] == {"rule": "billing_keywords", "matched": ["refund", "charge"],
                                "from_category": "Technical", "model_confidence": 0.6}


def test_answers_are_sent_exactly_as_their_response_schema_would_dump_them(
        trained_model_dir, tmp_path, monkeypatch):
    # /classify and /classify/batch send their answers without the schema's dump (the hot
    # path): dumping any kind of answer they send must change nothing.
    from smart_support.api.schemas import BatchResponseSchema, ClassificationSchema

    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path,
                      "webhook_urls": ("http://127.0.0.1:9/x",), "alert_threshold": 0.0,
                      "alert_outbox_max": 1, "alert_dispatcher": False})
    client = app.test_client()
    answers = [client.post("/classify", json={**TICKET, "ticket_id": "T-1"}).get_json(),
               client.post("/classify", json={"description": "x"}).get_json(),  # outbox full
               client.post("/classify?explain=true", json=TICKET).get_json()]
    service = app.extensions["smart_support"]
    monkeypatch.setattr(service.predictor, "predict", lambda tickets: (
        [Prediction({"Billing": 0.3, "Legal": 0.1, "Technical": 0.6}, 0.5) for _ in tickets],
        {"forward": 0.0}))
    answers.append(client.post("/classify?explain=true",
                               json={"description": "Please refund the double charge"}).get_json())
    assert [a["alert"]["status"] for a in answers] == ["queued"] + ["not_recorded"] * 3
    assert answers[2]["explanation"]["words"] and answers[3]["override"]
    for answer in answers:
        assert ClassificationSchema().dump(answer) == answer
    batch = client.post("/classify/batch", json={"tickets": [TICKET, {"description": "x"}]})
    assert BatchResponseSchema().dump(batch.get_json()) == batch.get_json()


def test_batch_returns_one_result_per_ticket_in_order(client):
    tickets = [{"description": f"ticket number {i} login error", "ticket_id": str(i)}
               for i in range(5)]
    response = client.post("/classify/batch", json={"tickets": tickets})
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 5
    assert [r["ticket_id"] for r in body["results"]] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("quantize, tolerance", [("none", 1e-4), ("int8", 0.05)])
def test_batch_and_single_answers_agree(trained_model_dir, quantize, tolerance):
    # fp32 is exact; dynamic int8 scales activations per batch, so batch-mates move
    # the scores slightly (never more than the tolerance).
    client = create_app({"model_dir": trained_model_dir, "quantize": quantize}).test_client()
    tickets = [{"description": "refund my invoice please"},
               {"subject": "help", "description": "the server returns error 500 since today"}]
    batch = client.post("/classify/batch", json={"tickets": tickets}).get_json()["results"]
    for ticket, result in zip(tickets, batch):
        single = client.post("/classify", json=ticket).get_json()
        for label, score in single["scores"].items():
            assert score == pytest.approx(result["scores"][label], abs=tolerance)
        assert single["urgency_score"] == pytest.approx(result["urgency_score"], abs=tolerance)


def test_invalid_json_is_a_400(client):
    assert_error(client.post("/classify", data="{not json", content_type="application/json"), 400)


def test_missing_description_is_a_422_naming_the_field(client):
    assert_error(client.post("/classify", json={"subject": "hi"}), 422, "description")


@pytest.mark.parametrize("ticket, field", [
    ({"description": "   \n"}, "description"),
    ({"description": 42}, "description"),
    ({"description": "ok", "subject": ["a"]}, "subject"),
    ({"description": "ok", "ticket_id": ""}, "ticket_id"),
    ({"description": "ok", "priority": "high"}, "priority"),
])
def test_bad_fields_are_422_naming_each_field(client, ticket, field):
    assert_error(client.post("/classify", json=ticket), 422, field)


def test_a_body_that_is_not_an_object_is_a_422(client):
    assert_error(client.post("/classify", data="[1, 2]", content_type="application/json"), 422)


def test_description_over_the_limit_is_a_422(client, app):
    limit = app.extensions["smart_support"].settings.max_description_chars
    body = assert_error(client.post("/classify", json={"description": "a" * (limit + 1)}), 422,
                        "description")
    assert str(limit) in body["errors"]["description"][0]


def test_description_at_the_limit_is_accepted(client, app):
    limit = app.extensions["smart_support"].settings.max_description_chars
    assert client.post("/classify", json={"description": "login " * (limit // 6)}).status_code == 200


def test_body_over_the_byte_limit_is_a_413(trained_model_dir):
    small = create_app({"model_dir": trained_model_dir, "max_body_bytes": 1000})
    response = small.test_client().post("/classify", json={"description": "x" * 2000})
    assert_error(response, 413)


def test_non_json_content_type_is_a_415(client):
    assert_error(client.post("/classify", data="description=hi",
                             content_type="application/x-www-form-urlencoded"), 415)


def test_unknown_route_is_a_404_and_wrong_method_a_405(client):
    assert_error(client.get("/nowhere"), 404)
    response = client.get("/classify")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_batch_limits_are_enforced(client, app):
    limit = app.extensions["smart_support"].settings.max_batch_size
    too_many = {"tickets": [{"description": "x"}] * (limit + 1)}
    body = assert_error(client.post("/classify/batch", json=too_many), 422, "tickets")
    assert str(limit) in body["errors"]["tickets"][0]
    assert_error(client.post("/classify/batch", json={"tickets": []}), 422, "tickets")
    assert_error(client.post("/classify/batch", json={}), 422, "tickets")


def test_batch_names_the_index_of_a_bad_ticket(client):
    body = assert_error(client.post("/classify/batch", json={
        "tickets": [{"description": "fine"}, {"subject": "no body"}]}), 422, "tickets")
    assert "description" in body["errors"]["tickets"]["1"]


def test_health_is_alive_and_ready_reports_the_model(client, app):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["model_version"] == app.extensions["smart_support"].model_version


def test_metrics_count_requests_and_stage_times(client):
    client.post("/classify", json=TICKET)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'smart_support_http_requests_total{endpoint="/classify",method="POST",status="200"}' in text
    assert 'smart_support_stage_seconds_count{stage="forward"}' in text


def test_openapi_documents_every_route_with_a_summary(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/classify", "/classify/batch", "/health", "/ready", "/metrics"):
        assert path in spec["paths"]
        for operation in spec["paths"][path].values():
            assert operation.get("summary"), (path, operation)


def test_docs_page_loads_its_assets_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_an_unexpected_error_is_a_500_without_internals(app, monkeypatch):
    service = app.extensions["smart_support"]

    def explode(tickets):
        raise RuntimeError("secret internal path /srv/x.py")

    monkeypatch.setattr(service, "triage", explode)
    response = app.test_client().post("/classify", json=TICKET)
    body = assert_error(response, 500)
    assert "secret" not in json.dumps(body)


def test_numpy_blas_runs_in_one_thread_beside_the_model(trained_model_dir):
    """OpenBLAS threads beside the model's wait for each other (the storm window product ran
    about 20x slower), whatever SMART_SUPPORT_TORCH_THREADS gives the model."""
    from threadpoolctl import threadpool_info

    create_app({"model_dir": trained_model_dir, "torch_threads": 2})
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
