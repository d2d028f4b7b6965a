"""A smaller student from a trained classifier (smart_support.training.shrink): fewer layers,
same tokenizer and head, and a model directory trained from it serves like any other."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from smart_support import create_app
from smart_support.cli import main
from smart_support.training.shrink import evenly_spaced, shrink

pytestmark = pytest.mark.slow


def test_evenly_spaced_layers_always_keep_the_last_one():
    assert evenly_spaced(6, 3) == [1, 3, 5]
    assert evenly_spaced(6, 2) == [2, 5]
    assert evenly_spaced(6, 6) == list(range(6))
    with pytest.raises(ValueError):
        evenly_spaced(6, 7)


def test_a_shrunk_student_trains_and_serves(trained_model_dir, tiny_ticket_files, tmp_path):
    from transformers import AutoConfig

    result = CliRunner().invoke(main, ["shrink", "--model-dir", str(trained_model_dir),
                                       "--layers", "1", "--out", str(tmp_path / "student")])
    assert result.exit_code == 0, result.output
    assert AutoConfig.from_pretrained(tmp_path / "student").num_hidden_layers == 1
    result = CliRunner().invoke(main, [
        "train", "--data", str(tiny_ticket_files["train"]), "--out", str(tmp_path / "models"),
        "--base-model", str(tmp_path / "student"), "--epochs", "2", "--batch-size", "8",
        "--max-tokens", "64", "--no-progress"])
    assert result.exit_code == 0, result.output
    app = create_app({"model_dir": tmp_path / "models", "TESTING": True})
    response = app.test_client().post("/classify", json={"description": "refund my invoice"})
    assert response.status_code == 200
    served = app.extensions["smart_support"].artifacts
    assert served.runtime == "onnx"
    assert AutoConfig.from_pretrained(served.model_dir / "classifier").num_hidden_layers == 1


def test_a_distilbert_classifier_shrinks_too(tmp_path):
    from transformers import (AutoConfig, BertTokenizer, DistilBertConfig,
                              DistilBertForSequenceClassification)

    from conftest import make_vocab

    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(make_vocab()), dim=32, n_layers=3, n_heads=2, hidden_dim=37,
        num_labels=3))
    model.save_pretrained(tmp_path / "teacher")
    BertTokenizer(vocab=make_vocab()).save_pretrained(tmp_path / "teacher")
    assert shrink(tmp_path / "teacher", tmp_path / "student", 2) == [1, 2]
    assert AutoConfig.from_pretrained(tmp_path / "student").n_layers == 2


def test_shrinking_to_more_layers_than_exist_is_a_clear_error(trained_model_dir, tmp_path):
    result = CliRunner().invoke(main, ["shrink", "--model-dir", str(trained_model_dir),
                                       "--layers", "5", "--out", str(tmp_path / "s")])
    assert result.exit_code != 0 and "can keep 1 to 2 layers" in result.output


def test_the_distillation_loss_is_zero_only_when_the_student_agrees_with_the_teacher():
    import numpy as np
    import torch

    from smart_support.training.train import distillation_loss

    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    agreeing = torch.log(torch.as_tensor(teacher))  # same distribution at any temperature
    assert distillation_loss(agreeing, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-5)
    disagreeing = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    assert distillation_loss(disagreeing, teacher, 2.0).item() > 0.1


def test_a_student_learns_from_its_teacher_and_records_it(trained_model_dir, tiny_ticket_files,
                                                          tmp_path):
    import json

    shrink(trained_model_dir / "classifier", tmp_path / "student", 1)
    result = CliRunner().invoke(main, [
        "train", "--data", str(tiny_ticket_files["train"]), "--out", str(tmp_path / "models"),
        "--base-model", str(tmp_path / "student"), "--teacher", str(trained_model_dir),
        "--distill-weight", "0.7", "--augment", "2", "--epochs", "2", "--batch-size", "8",
        "--max-tokens", "64", "--no-progress"])
    assert result.exit_code == 0, result.output
    metadata = json.loads((tmp_path / "models" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["teacher"] == str(trained_model_dir)
    assert metadata["hyperparameters"]["distill_weight"] == 0.7
    assert metadata["hyperparameters"]["augment"] == 2
    # perturbed copies are extra gradient steps only: the recorded split counts originals
    assert metadata["training_data"]["train_tickets"] + \
        metadata["training_data"]["validation_tickets"] == metadata["training_data"]["tickets"]
    teacher_version = json.loads((trained_model_dir / "metadata.json").read_text())["version"]
    assert metadata["version"] != teacher_version


def test_a_teacher_with_other_labels_is_refused_clearly(trained_model_dir, tiny_base_model,
                                                        tmp_path):
    from conftest import make_tickets, write_jsonl

    two_labels = {"Billing": ["refund", "invoice", "card"], "Legal": ["gdpr", "court", "terms"]}
    data = write_jsonl(tmp_path / "two.jsonl", make_tickets(10, categories=two_labels))
    result = CliRunner().invoke(main, [
        "train", "--data", str(data), "--out", str(tmp_path / "m"), "--base-model",
        str(tiny_base_model), "--teacher", str(trained_model_dir), "--epochs", "1",
        "--max-tokens", "32", "--no-progress"])
    assert result.exit_code != 0 and "teacher's labels" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("count", ["-1", "11", "two"])
def test_an_augment_count_out_of_range_is_refused_before_training(tiny_base_model,
                                                                   tiny_ticket_files, tmp_path,
                                                                   count):
    result = CliRunner().invoke(main, [
        "train", "--data", str(tiny_ticket_files["train"]), "--out", str(tmp_path / "m"),
        "--base-model", str(tiny_base_model), "--augment", count, "--no-progress"])
    assert result.exit_code == 2 and "--augment" in result.output
    assert not (tmp_path / "m").exists()
