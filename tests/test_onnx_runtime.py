"""The onnx runtime (the default): every trained model directory carries an export that gives
torch's answers, the server on it never imports torch, and a stale or damaged export is refused
with the file named."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from smart_support import create_app
from smart_support.cli import main
from smart_support.config import ConfigError, Settings
from smart_support.inference.artifacts import load_artifacts
from smart_support.inference.predictor import Predictor, Ticket
from conftest import build_tiny_checkpoint, make_tickets, write_jsonl

TICKETS = [Ticket("refund", "I was charged twice, please refund the payment"),
           Ticket("", "login error since the server update, every page is broken " * 8),
           Ticket("gdpr", "our lawyer asks about the privacy clause")]


def predictions(model_dir, runtime, quantize="none"):
    predictor = Predictor(load_artifacts(model_dir, runtime), 64, 2, quantize)
    results, _ = predictor.predict(TICKETS)
    return (np.array([[r.scores[k] for k in sorted(r.scores)] for r in results]),
            np.array([r.urgency for r in results]))


def ready_reason(model_dir, **settings):
    client = create_app({"model_dir": model_dir, "runtime": "onnx", **settings}).test_client()
    response = client.get("/ready")
    assert response.status_code == 503
    return response.get_json()


def test_onnx_runtime_gives_the_answers_of_torch_in_fp32(trained_model_dir):
    onnx_probs, onnx_urgency = predictions(trained_model_dir, "onnx")
    torch_probs, torch_urgency = predictions(trained_model_dir, "torch")
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    np.testing.assert_allclose(onnx_urgency, torch_urgency, atol=1e-4)


def test_onnx_int8_answers_are_probabilities_for_every_ticket(trained_model_dir):
    probs, urgency = predictions(trained_model_dir, "onnx", "int8")
    assert probs.shape == (len(TICKETS), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((urgency >= 0) & (urgency <= 1)).all()


def test_the_export_records_how_close_it_came_to_torch(trained_model_dir):
    for name in ("classifier", "storm-encoder"):
        manifest = json.loads((trained_model_dir / "onnx" / name / "encoder.json").read_text())
        assert manifest["max_abs_difference_fp32"] < 1e-3
        assert {"model.onnx", "model.int8.onnx", "tokenizer.json"} <= set(manifest["files"])


def test_a_server_on_the_onnx_runtime_never_imports_torch(trained_model_dir, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from smart_support import create_app
        app = create_app({{"model_dir": {str(trained_model_dir)!r}, "runtime": "onnx",
                          "storm_enabled": True,
                          "database_url": "sqlite:///{tmp_path / 'desk.db'}"}})
        client = app.test_client()
        assert client.get("/ready").status_code == 200, client.get("/ready").get_json()
        answer = client.post("/classify", json={{"subject": "refund",
                                                 "description": "charged twice"}})
        assert answer.status_code == 200, answer.get_json()
        ticket = client.post("/tickets", json={{"description": "login error on every page"}})
        assert ticket.status_code in (200, 201, 202), ticket.get_json()
        print("torch imported:", "torch" in sys.modules)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "torch imported: False" in run.stdout


def test_an_export_from_other_weights_is_refused_until_exported_again(model_copy, runner):
    weights = model_copy / "classifier" / "model.safetensors"
    manifest_path = model_copy / "onnx" / "classifier" / "encoder.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source_sha256"] = "0" * 64  # as if the checkpoint had been retrained since
    manifest_path.write_text(json.dumps(manifest))
    body = ready_reason(model_copy)
    assert body["file"] == "onnx/classifier/encoder.json"
    assert "other weights" in body["reason"] and "smart-support export" in body["reason"]

    result = runner.invoke(main, ["export", "--model-dir", str(model_copy)])
    assert result.exit_code == 0, result.output
    assert weights.is_file()
    client = create_app({"model_dir": model_copy, "runtime": "onnx"}).test_client()
    assert client.get("/ready").status_code == 200


def test_a_model_directory_without_an_export_names_it(model_copy):
    import shutil

    shutil.rmtree(model_copy / "onnx" / "classifier")
    body = ready_reason(model_copy)
    assert body["file"] == "onnx/classifier"
    assert "smart-support export" in body["reason"]


@pytest.mark.parametrize("quantize, name", [("int8", "model.int8.onnx"), ("none", "model.onnx")])
def test_a_damaged_onnx_file_is_refused_by_its_digest(model_copy, quantize, name):
    path = model_copy / "onnx" / "classifier" / name
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    body = ready_reason(model_copy, quantize=quantize)
    assert body["file"] == f"onnx/classifier/{name}"
    assert "digest" in body["reason"]


def test_a_missing_storm_encoder_export_keeps_the_service_unready(model_copy, tmp_path):
    import shutil

    shutil.rmtree(model_copy / "onnx" / "storm-encoder")
    body = ready_reason(model_copy, storm_enabled=True,
                       database_url=f"sqlite:///{tmp_path / 'desk.db'}")
    assert "storm-encoder" in body["reason"] and "smart-support export" in body["reason"]


def test_the_runtime_setting_is_validated():
    assert Settings.from_env({"SMART_SUPPORT_RUNTIME": "torch"}).runtime == "torch"
    with pytest.raises(ConfigError, match="SMART_SUPPORT_RUNTIME"):
        Settings.from_env({"SMART_SUPPORT_RUNTIME": "tensorflow"})


def test_a_distilbert_model_is_served_by_onnx_runtime_like_torch(tmp_path):
    base = build_tiny_checkpoint(tmp_path / "distil", "distilbert")
    data = write_jsonl(tmp_path / "train.jsonl", make_tickets(15, seed=3))
    from smart_support.training.train import TrainConfig, train

    out = tmp_path / "models"
    train(TrainConfig(data=data, out=out, base_model=base, epochs=1, max_tokens=32,
                      progress=False))
    onnx_probs, onnx_urgency = predictions(out, "onnx")
    torch_probs, torch_urgency = predictions(out, "torch")
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    np.testing.assert_allclose(onnx_urgency, torch_urgency, atol=1e-4)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_either_runtime_serves_and_says_which_it_is(trained_model_dir, runtime):
    client = create_app({"model_dir": trained_model_dir, "runtime": runtime,
                         "quantize": "none"}).test_client()
    ready = client.get("/ready").get_json()
    assert ready["runtime"] == {"name": runtime, "quantize": "none", "threads": 1}
    answer = client.post("/classify", json={"subject": "refund", "description": "charged twice"})
    assert answer.status_code == 200
    assert answer.get_json()["model"] == "transformer"


def test_both_runtimes_answer_alike_over_http(trained_model_dir):
    ticket = {"subject": "login", "description": "error on every page since the update"}
    answers = [create_app({"model_dir": trained_model_dir, "runtime": runtime, "quantize": "none"})
               .test_client().post("/classify", json=ticket).get_json()
               for runtime in ("onnx", "torch")]
    assert answers[0]["category"] == answers[1]["category"]
    for label, score in answers[0]["scores"].items():
        assert abs(score - answers[1]["scores"][label]) <= 2e-4


def test_export_of_a_missing_model_directory_names_the_file_and_writes_nothing(runner,
                                                                              tmp_path):
    result = runner.invoke(main, ["export", "--model-dir", str(tmp_path / "absent")])
    assert result.exit_code != 0
    assert "urgency.json" in result.output and "missing" in result.output
    assert not (tmp_path / "absent").exists()


def test_export_with_an_unusable_storm_encoder_fails_and_keeps_the_old_one(model_copy, runner,
                                                                           tmp_path):
    storm = model_copy / "onnx" / "storm-encoder"
    before = (storm / "encoder.json").read_text()
    broken = tmp_path / "not-an-encoder"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = runner.invoke(main, ["export", "--model-dir", str(model_copy),
                                  "--storm-encoder", str(broken)])
    assert result.exit_code != 0
    assert "not-an-encoder" in result.output and "config.json" in result.output
    assert (storm / "encoder.json").read_text() == before
    assert not [p for p in storm.parent.iterdir() if p.name.startswith(".")]  # no staging left
