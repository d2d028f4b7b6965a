"""Calibrated confidence, the needs-review threshold and explanations."""
import numpy as np
import pytest

from smart_support import create_app
from smart_support.training.metrics import (
    apply_temperature, fit_temperature, reliability, review_threshold,
)


def test_temperature_fitting_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(4000, 3))
    truth = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    overconfident = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.5)
    temperature = fit_temperature(overconfident, truth)
    assert temperature == pytest.approx(2.0, rel=0.15)
    fixed = apply_temperature(overconfident, temperature)
    assert reliability(fixed, truth)["ece"] < reliability(overconfident, truth)["ece"]


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert reliability(probs, [0, 0, 0, 1])["ece"] == pytest.approx(0.0)
    assert reliability(probs, [1, 1, 1, 1])["ece"] == pytest.approx(0.75)


def test_review_threshold_is_the_lowest_that_reaches_the_target_precision():
    confidence = [0.99, 0.95, 0.9, 0.8, 0.6, 0.5]
    correct = [True, True, True, False, True, False]
    chosen = review_threshold(confidence, correct, target_precision=0.97)
    assert chosen["threshold"] == 0.9
    assert chosen["auto_precision"] == 1.0
    assert chosen["review_share"] == pytest.approx(0.5)
    assert review_threshold(confidence, [True] * 6, 0.97)["threshold"] == 0.0


def test_training_stores_a_temperature_and_a_review_threshold(trained_model_dir):
    import json

    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    assert metadata["calibration"]["temperature"] > 0
    assert 0.0 <= metadata["review"]["threshold"] <= 1.0
    assert metadata["review"]["target_precision"] == 0.97


@pytest.mark.parametrize("threshold, expected", [(1.0, True), (0.0, False)])
def test_needs_review_follows_the_threshold_setting(trained_model_dir, threshold, expected):
    client = create_app({"model_dir": trained_model_dir,
                         "review_threshold": threshold}).test_client()
    body = client.post("/classify", json={"description": "login error on the api"}).get_json()
    assert body["needs_review"] is expected
    assert body["category"] in body["scores"], "the best category is still returned"


def test_explanations_come_only_on_request(client):
    ticket = {"subject": "refund", "description": "I was charged twice, please refund my card"}
    assert "explanation" not in client.post("/classify", json=ticket).get_json()
    body = client.post("/classify?explain=true", json=ticket).get_json()
    explanation = body["explanation"]
    assert explanation["method"] == "occlusion"
    assert explanation["model_category"] == body["model_category"]
    weights = [w["weight"] for w in explanation["words"]]
    assert weights == sorted(weights, reverse=True)
    assert all(w > 0 for w in weights)
    text = (ticket["subject"] + " " + ticket["description"]).lower()
    assert all(w["word"] in text for w in explanation["words"])
    assert explanation["rule"] == body["override"]


def test_an_invalid_explain_flag_is_a_422_naming_it(client):
    response = client.post("/classify?explain=perhaps", json={"description": "hi"})
    assert response.status_code == 422
    assert "explain" in response.get_json()["errors"]


def test_evaluation_reports_calibration_and_draws_the_diagram(runner, trained_model_dir,
                                                              tiny_ticket_files, tmp_path):
    import json

    from smart_support.cli import main

    plot = tmp_path / "reliability.png"
    out = tmp_path / "report.json"
    result = runner.invoke(main, ["evaluate", "--data", str(tiny_ticket_files["test"]),
                                  "--model-dir", str(trained_model_dir), "--out", str(out),
                                  "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    calibration = json.loads(out.read_text())["calibration"]
    assert 0 <= calibration["after"]["ece"] <= 1 and 0 <= calibration["before"]["ece"] <= 1
    assert 0 <= calibration["needs_review"]["review_share"] <= 1
