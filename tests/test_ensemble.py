"""The transformer + baseline blend (SMART_SUPPORT_ENSEMBLE): fitted on the validation split
only, refused when missing or fitted for another model, and served as the mix it claims."""
import json

import numpy as np
import pytest

from smart_support import create_app
from smart_support.cli import main
from smart_support.config import Settings
from smart_support.inference.artifacts import load_artifacts
from smart_support.inference.baseline import BaselinePredictor
from smart_support.inference.predictor import blend_probabilities
from smart_support.training.data import validation_tickets
from smart_support.training.ensemble import WEIGHTS, fit_blend, fit_ensemble

LABELS = ["Billing", "Legal", "Technical"]


def ensemble_path(model_dir):
    return model_dir / "ensemble.json"


def rewrite_ensemble(model_dir, change):
    fitted = json.loads(ensemble_path(model_dir).read_text())
    change(fitted)
    ensemble_path(model_dir).write_text(json.dumps(fitted))


def test_a_blend_is_a_weighted_mix_of_two_distributions():
    transformer = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    baseline = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    mixed = blend_probabilities(transformer, baseline, 0.25)
    np.testing.assert_allclose(mixed, 0.75 * transformer + 0.25 * baseline)
    tempered = blend_probabilities(transformer, baseline, 0.25, temperature=2.0)
    np.testing.assert_allclose(tempered.sum(1), 1.0)
    assert (tempered.argmax(1) == mixed.argmax(1)).all()
    assert tempered.max() < mixed.max()  # T > 1 makes the answer less confident


def test_the_fit_picks_the_smallest_weight_with_the_best_validation_macro_f1():
    # The transformer is right on the first three tickets only, the baseline on the last
    # three only; every weight from 0.2 to 0.6 gets all six right.
    truth = [0, 1, 2, 1, 2, 0]
    transformer, baseline = np.zeros((6, 3)), np.zeros((6, 3))
    for row, label in enumerate(truth):
        wrong = (label + 1) % 3
        if row < 3:
            transformer[row, [label, wrong]] = 0.6, 0.4
            baseline[row, [label, wrong]] = 0.45, 0.55
        else:
            transformer[row, [label, wrong]] = 0.45, 0.55
            baseline[row, [label, wrong]] = 0.9, 0.1
    texts = ["the api times out"] * 6
    fitted = fit_blend(transformer, baseline, truth, texts, LABELS, 0.97)
    assert fitted["baseline_weight"] == 0.2
    scores = fitted["validation"]["macro_f1"]
    assert scores["ensemble"] == 1.0 > max(scores["transformer"], scores["baseline"])
    assert set(fitted["validation_macro_f1_by_weight"]) == {str(w) for w in WEIGHTS}
    assert 0.0 <= fitted["review"]["threshold"] <= 1.0
    assert "1.01" in fitted["validation"]["billing_rule_by_max_confidence"]


def test_a_tie_goes_to_the_transformer_alone():
    truth = [0, 1, 2]
    perfect = np.eye(3) * 0.8 + 0.2 / 3
    fitted = fit_blend(perfect, perfect, truth, ["a", "b", "c"], LABELS, 0.97)
    assert fitted["baseline_weight"] == 0.0


def test_the_validation_split_is_rebuilt_from_the_training_file(trained_model_dir,
                                                               tiny_ticket_files):
    metadata = load_artifacts(trained_model_dir).metadata
    tickets = validation_tickets(metadata)
    assert len(tickets) == metadata["training_data"]["validation_tickets"]
    with pytest.raises(ValueError, match="not the file this model was trained on"):
        validation_tickets(metadata, tiny_ticket_files["test"])


def test_the_ensemble_command_writes_a_blend_fitted_for_this_model(runner, model_copy):
    result = runner.invoke(main, ["ensemble", "--model-dir", str(model_copy)])
    assert result.exit_code == 0, result.output
    fitted = json.loads(ensemble_path(model_copy).read_text())
    metadata = json.loads((model_copy / "metadata.json").read_text())
    assert fitted["model_version"] == metadata["version"]
    assert fitted["labels"] == metadata["labels"]
    assert fitted["baseline_weight"] in WEIGHTS
    assert fitted["validation"]["tickets"] == metadata["training_data"]["validation_tickets"]
    assert f"baseline weight {fitted['baseline_weight']}" in result.output


def test_the_ensemble_command_refuses_a_file_the_model_was_not_trained_on(
        runner, model_copy, tiny_ticket_files):
    result = runner.invoke(main, ["ensemble", "--model-dir", str(model_copy),
                                  "--data", str(tiny_ticket_files["test"])])
    assert result.exit_code != 0
    assert "not the file this model was trained on" in result.output
    assert not ensemble_path(model_copy).exists()


def not_ready_with_ensemble(model_dir):
    client = create_app({"model_dir": model_dir, "ensemble": True}).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert client.post("/classify", json={"description": "hello"}).status_code == 503
    return ready.get_json()


def test_ensemble_on_without_ensemble_json_is_not_ready_and_says_how_to_fit_it(model_copy):
    body = not_ready_with_ensemble(model_copy)
    assert body["file"] == "ensemble.json"
    assert "smart-support ensemble" in body["reason"]


def test_an_ensemble_fitted_for_another_model_is_refused(model_copy):
    fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    rewrite_ensemble(model_copy, lambda e: e.update(model_version="20260101-0000beef-s13"))
    body = not_ready_with_ensemble(model_copy)
    assert body["file"] == "ensemble.json"
    assert "fitted for model '20260101-0000beef-s13'" in body["reason"]


@pytest.mark.parametrize("change", [
    lambda e: e.update(baseline_weight=1.5),
    lambda e: e["review"].update(threshold="high"),
    lambda e: e["calibration"].update(temperature=0),
    lambda e: e.update(labels=["Billing", "Technical"]),
], ids=["weight above 1", "threshold not a number", "temperature 0", "other labels"])
def test_an_inconsistent_ensemble_json_is_refused(model_copy, change):
    fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    rewrite_ensemble(model_copy, change)
    assert not_ready_with_ensemble(model_copy)["file"] == "ensemble.json"


def test_a_retrained_model_drops_the_blend_fitted_for_the_old_one(model_copy, tiny_base_model,
                                                                  tiny_ticket_files):
    from smart_support.training.train import TrainConfig, train

    fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    train(TrainConfig(data=tiny_ticket_files["train"], out=model_copy,
                      base_model=tiny_base_model, epochs=1, batch_size=8, max_tokens=64,
                      progress=False))
    assert not ensemble_path(model_copy).exists()


def test_the_ensemble_answers_with_the_blend_and_its_own_review_threshold(model_copy):
    fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    # A weight and a threshold that make the check exact: half and half, everything reviewed.
    rewrite_ensemble(model_copy, lambda e: (e.update(baseline_weight=0.5),
                                            e["calibration"].update(temperature=1.0),
                                            e["review"].update(threshold=1.0)))
    ticket = {"subject": "Refund", "description": "I was charged twice for my plan, refund please"}
    alone = create_app({"model_dir": model_copy}).test_client()
    together = create_app({"model_dir": model_copy, "ensemble": True}).test_client()
    assert together.get("/ready").get_json()["answered_by"] == "ensemble"
    assert alone.get("/ready").get_json()["answered_by"] == "transformer"

    transformer = alone.post("/classify", json=ticket).get_json()
    blended = together.post("/classify", json=ticket).get_json()
    artifacts = load_artifacts(model_copy)
    baseline, _ = BaselinePredictor(artifacts.baseline).predict_texts(
        [f"{ticket['subject']}\n{ticket['description']}"])
    for column, label in enumerate(artifacts.labels):
        expected = 0.5 * transformer["scores"][label] + 0.5 * baseline[0, column]
        assert blended["scores"][label] == pytest.approx(expected, abs=2e-4)
    assert blended["model"] == "ensemble"
    assert blended["degraded"] is False
    assert blended["needs_review"] is True
    assert blended["urgency_score"] == transformer["urgency_score"]  # the transformer's


def test_evaluate_scores_the_blend_when_the_ensemble_is_on(model_copy, tiny_ticket_files):
    from smart_support.training.evaluate import evaluate

    fitted = fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    report = evaluate(tiny_ticket_files["test"],
                      Settings.from_env({}, model_dir=model_copy, ensemble=True))
    assert report["model"]["ensemble"]["baseline_weight"] == fitted["baseline_weight"]
    assert report["calibration"]["temperature"] == fitted["calibration"]["temperature"]
    assert report["calibration"]["needs_review"]["threshold"] == fitted["review"]["threshold"]
    plain = evaluate(tiny_ticket_files["test"], Settings.from_env({}, model_dir=model_copy))
    assert plain["model"]["ensemble"] is None


def test_the_explanation_is_occlusion_on_the_blend_served(model_copy):
    import re

    fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    # All weight on the baseline: each word's weight must be the drop in the baseline's
    # probability of the answer when that word is removed.
    rewrite_ensemble(model_copy, lambda e: (e.update(baseline_weight=1.0),
                                            e["calibration"].update(temperature=1.0)))
    client = create_app({"model_dir": model_copy, "ensemble": True}).test_client()
    text = "I was charged twice for my subscription, refund the money please"
    body = client.post("/classify?explain=true", json={"description": text}).get_json()
    words = body["explanation"]["words"]
    assert words and body["explanation"]["method"] == "occlusion"
    baseline = BaselinePredictor(load_artifacts(model_copy).baseline)
    column = baseline.labels.index(body["model_category"])
    whole = baseline.predict_texts([text])[0][0, column]
    for item in words:
        without = re.sub(rf"(?<!\w){re.escape(item['word'])}(?!\w)", " ", text,
                         flags=re.IGNORECASE)
        drop = whole - baseline.predict_texts([without])[0][0, column]
        assert item["weight"] == pytest.approx(drop, abs=2e-4)


def test_the_baseline_in_a_blend_reads_only_the_head_and_tail_of_a_long_text(trained_model_dir):
    from smart_support.inference.predictor import Blend, head_and_tail

    baseline = BaselinePredictor(load_artifacts(trained_model_dir).baseline)
    text = "refund invoice " * 100 + "lawyer gdpr contract " * 1000 + "login error crash " * 100
    served = Blend(baseline, 1.0)(np.full((1, 3), 1 / 3), [text], 512)
    expected, _ = baseline.predict_texts([f"{text[:512]}\n{text[-512:]}"])
    np.testing.assert_allclose(served, expected, atol=1e-6)
    whole, _ = baseline.predict_texts([text])
    assert np.abs(whole - expected).max() > 0.01  # the middle would have moved the answer
    assert head_and_tail("a short ticket", 512) == "a short ticket"


def test_drift_with_the_ensemble_on_names_a_missing_ensemble_json(runner, model_copy, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SMART_SUPPORT_ENSEMBLE", "true")
    result = runner.invoke(main, ["drift", "--model-dir", str(model_copy)])
    assert result.exit_code == 1
    assert "ensemble.json: missing" in result.output


def test_drift_with_the_ensemble_on_compares_with_the_blend_s_reference(runner, model_copy,
                                                                       tmp_path, monkeypatch):
    fitted = fit_ensemble(Settings.from_env({}, model_dir=model_copy))
    monkeypatch.setenv("SMART_SUPPORT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SMART_SUPPORT_ENSEMBLE", "true")
    out = tmp_path / "drift.json"
    result = runner.invoke(main, ["drift", "--model-dir", str(model_copy), "--out", str(out)])
    assert result.exit_code == 0, result.output
    reference = json.loads(out.read_text())["reference"]
    assert reference["confidence_histogram"] == \
        fitted["calibration"]["validation_confidence_histogram"]
    assert reference["review_share"] == fitted["review"]["review_share"]
