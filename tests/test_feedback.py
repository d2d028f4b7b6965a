"""Feedback is validated like everything else, stored durably, and folded into training."""
import json

import pytest

from smart_support import create_app
from smart_support.cli import main
from smart_support.storage import Storage, database_url


@pytest.fixture
def desk(trained_model_dir, tmp_path):
    app = create_app({"model_dir": trained_model_dir, "data_dir": tmp_path / "var"})
    return app, app.test_client()


def test_a_correction_by_ticket_id_reuses_the_logged_text(desk):
    app, client = desk
    classified = client.post("/classify", json={"ticket_id": "T-9", "subject": "pay",
                                                 "description": "refund me please"}).get_json()
    response = client.post("/feedback", json={"ticket_id": "T-9", "category": "Legal",
                                              "urgency": 0.4, "agent": "ann"})
    assert response.status_code == 201
    record = response.get_json()
    assert record["category"] == "Legal"
    assert record["predicted_category"] == classified["category"]
    stored = app.extensions["smart_support_storage"].feedback_rows()[0]
    assert (stored["subject"], stored["description"]) == ("pay", "refund me please")


def test_a_correction_with_text_needs_no_id(desk):
    _, client = desk
    response = client.post("/feedback", json={"description": "my login fails",
                                              "category": "Technical"})
    assert response.status_code == 201
    listed = client.get("/feedback?limit=1").get_json()["feedback"]
    assert listed[0]["id"] == response.get_json()["id"]


@pytest.mark.parametrize("body, field", [
    ({"category": "Legal"}, "description"),
    ({"description": "x", "category": "Sales"}, "category"),
    ({"description": "x", "category": "Legal", "urgency": 1.5}, "urgency"),
    ({"description": "x"}, "category"),
    ({"description": "x", "category": "Legal", "note": "n" * 2001}, "note"),
    ({"description": "x", "category": "Legal", "extra": 1}, "extra"),
])
def test_bad_corrections_are_422_naming_the_field(desk, body, field):
    _, client = desk
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_an_unknown_ticket_id_without_text_is_a_404_naming_it(desk):
    _, client = desk
    response = client.post("/feedback", json={"ticket_id": "never-seen", "category": "Legal"})
    assert response.status_code == 404
    assert "ticket_id" in response.get_json()["errors"]


def test_prediction_log_keeps_text_only_with_a_ticket_id(desk):
    app, client = desk
    client.post("/classify", json={"description": "anonymous ticket"})
    client.post("/classify/batch", json={"tickets": [{"description": "kept", "ticket_id": "A"}]})
    app.extensions["smart_support_prediction_log"].flush()
    storage = app.extensions["smart_support_storage"]
    with storage.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT ticket_id, description FROM predictions ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [(None, None), ("A", "kept")]


def test_unavailable_storage_refuses_feedback_but_still_classifies(trained_model_dir, tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    app = create_app({"model_dir": trained_model_dir, "data_dir": blocked})
    client = app.test_client()
    assert client.post("/classify", json={"description": "hi"}).status_code == 200
    response = client.post("/feedback", json={"description": "x", "category": "Legal"})
    assert response.status_code == 503
    assert response.get_json()["code"] == 503


def test_training_with_feedback_folds_corrections_in(runner, desk, tiny_base_model,
                                                     tiny_ticket_files, tmp_path, monkeypatch):
    app, client = desk
    for _ in range(3):
        assert client.post("/feedback", json={"description": "zebra lawyer court",
                                               "category": "Legal", "urgency": 0.9}).status_code == 201
    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(app.extensions["smart_support"].settings.data_dir))
    out = tmp_path / "retrained"
    result = runner.invoke(main, ["train", "--data", str(tiny_ticket_files["train"]), "--out",
                                  str(out), "--base-model", str(tiny_base_model), "--epochs", "1",
                                  "--include-feedback", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 corrections" in result.output
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["training_data"]["feedback_tickets"] == 3
    assert metadata["training_data"]["tickets"] == 120 + 3


def test_drift_reports_live_traffic_against_training(runner, desk, tmp_path, monkeypatch):
    app, client = desk
    for text in ("refund my card", "login error", "gdpr request", "refund twice"):
        client.post("/classify", json={"description": text})
    app.extensions["smart_support_prediction_log"].flush()
    settings = app.extensions["smart_support"].settings
    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(settings.data_dir))
    out, plot = tmp_path / "drift.json", tmp_path / "drift.png"
    result = runner.invoke(main, ["drift", "--model-dir", str(settings.model_dir), "--out",
                                  str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["tickets"] == 4
    (day,) = report["days"]
    assert day["tickets"] == 4
    assert sum(day["category_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= day["category_distance"] <= 1.0
    assert 0.0 <= day["confidence_distance"] <= 1.0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_drift_with_no_traffic_says_so(runner, trained_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(tmp_path / "empty"))
    result = runner.invoke(main, ["drift", "--model-dir", str(trained_model_dir)])
    assert result.exit_code == 0
    assert "no predictions" in result.output


def test_default_database_lives_in_the_data_dir(tmp_path):
    url = database_url(tmp_path / "var", "")
    assert url.endswith("var/smart_support.db")
    Storage(url).migrate()
    Storage(url).migrate()  # idempotent, as when several workers start together
