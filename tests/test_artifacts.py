"""A missing or inconsistent artifact keeps the service alive but not ready, naming the file."""
import json
import pickle

import pytest
from sklearn.preprocessing import LabelEncoder

from smart_support import create_app
from smart_support.inference.artifacts import ArtifactError, load_artifacts, sha256_file


def not_ready(model_dir):
    client = create_app({"model_dir": model_dir}).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert client.get("/health").status_code == 200
    refused = client.post("/classify", json={"description": "hello"})
    assert refused.status_code == 503
    assert refused.get_json()["code"] == 503
    return ready.get_json()


def rewrite_metadata(model_dir, change):
    path = model_dir / "metadata.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def test_a_good_model_directory_loads(trained_model_dir):
    artifacts = load_artifacts(trained_model_dir)
    assert artifacts.labels == ["Billing", "Legal", "Technical"]


def test_missing_model_directory_is_named(tmp_path):
    body = not_ready(tmp_path / "absent")
    assert body["file"] == "absent"
    assert "make model" in body["reason"]


def test_the_reason_never_shows_server_paths(model_copy):
    (model_copy / "label_encoder.pkl").unlink()
    body = not_ready(model_copy)
    assert body["file"] == "label_encoder.pkl"
    assert str(model_copy) not in body["reason"]


@pytest.mark.parametrize("name", ["metadata.json", "label_encoder.pkl", "urgency.json",
                                  "baseline.pkl", "classifier/config.json",
                                  "classifier/model.safetensors"])
def test_each_missing_file_is_named(model_copy, name):
    (model_copy / name).unlink()
    body = not_ready(model_copy)
    assert body["file"].endswith(name)
    assert "missing" in body["reason"]


def test_label_encoder_classes_that_disagree_with_the_model_are_refused(model_copy):
    encoder = LabelEncoder().fit(["Billing", "Legal", "Sales"])
    path = model_copy / "label_encoder.pkl"
    path.write_bytes(pickle.dumps(encoder))
    rewrite_metadata(model_copy, lambda m: m["files"].update(
        {"label_encoder.pkl": sha256_file(path)}))
    body = not_ready(model_copy)
    assert body["file"].endswith("label_encoder.pkl")
    assert "Sales" in body["reason"]


def test_a_pickle_that_does_not_match_its_recorded_digest_is_never_unpickled(model_copy):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle code ran')",))

    (model_copy / "label_encoder.pkl").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ArtifactError, match="does not match") as caught:
        load_artifacts(model_copy)
    assert caught.value.path.endswith("label_encoder.pkl")


def test_corrupt_json_is_named(model_copy):
    (model_copy / "urgency.json").write_text("{not json")
    rewrite_metadata(model_copy, lambda m: m["files"].pop("urgency.json"))
    body = not_ready(model_copy)
    assert body["file"].endswith("urgency.json")


def test_urgency_model_of_the_wrong_size_is_refused(model_copy):
    path = model_copy / "urgency.json"
    urgency = json.loads(path.read_text())
    urgency["coef"] = urgency["coef"][:-1]
    path.write_text(json.dumps(urgency))
    rewrite_metadata(model_copy, lambda m: m["files"].update({"urgency.json": sha256_file(path)}))
    body = not_ready(model_copy)
    assert body["file"].endswith("urgency.json")
    assert "coefficients" in body["reason"]


def test_classifier_labels_that_disagree_with_metadata_are_refused(model_copy):
    rewrite_metadata(model_copy, lambda m: m.update(labels=["A", "B", "C"]))
    body = not_ready(model_copy)
    assert body["file"].endswith("config.json")


def test_corrupt_weights_are_named(model_copy):
    (model_copy / "classifier" / "model.safetensors").write_bytes(b"garbage")
    body = not_ready(model_copy)
    assert "classifier" in body["file"]
