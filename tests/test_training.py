"""Training and evaluation end to end on tiny random encoders built inside the tests."""
import json

import pytest

from conftest import build_tiny_checkpoint, make_tickets, write_jsonl
from smart_support.cli import main
from smart_support.inference.artifacts import load_artifacts
from smart_support.training.metrics import urgency_metrics


def test_training_writes_a_consistent_model_directory(trained_model_dir):
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    assert metadata["labels"] == ["Billing", "Legal", "Technical"]
    assert len(metadata["training_data"]["sha256"]) == 64
    assert metadata["training_data"]["validation_tickets"] > 0
    assert set(metadata["validation"]) >= {"transformer", "baseline"}
    assert set(metadata["files"]) == {"label_encoder.pkl", "urgency.json", "baseline.pkl"}
    assert load_artifacts(trained_model_dir).labels == metadata["labels"]


def test_evaluate_prints_and_writes_the_full_report(runner, trained_model_dir, tiny_ticket_files,
                                                    tmp_path):
    out = tmp_path / "report.json"
    result = runner.invoke(main, ["evaluate", "--data", str(tiny_ticket_files["test"]),
                                  "--model-dir", str(trained_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "baseline" in result.output
    report = json.loads(out.read_text())
    for model in ("transformer", "baseline"):
        assert 0.0 <= report[model]["macro_f1"] <= 1.0
        assert set(report[model]["per_category"]) == {"Billing", "Legal", "Technical"}
        assert len(report[model]["confusion_matrix"]["rows_true_columns_predicted"]) == 3
        assert -1.0 <= report[model]["urgency"]["spearman"] <= 1.0
        assert report[model]["urgency"]["mae"] >= 0.0
        assert {"precision", "recall", "raised", "deserved"} <= set(report[model]["urgency"]["alerts"])
    assert sum(map(sum, report["transformer"]["confusion_matrix"]["rows_true_columns_predicted"])) == 30
    rule = report["billing_rule"]["guarded"]
    assert rule["changed"] == (rule["changed_to_correct"] + rule["changed_from_correct"]
                               + rule["changed_wrong_to_wrong"])


def test_evaluate_refuses_the_training_file(runner, trained_model_dir, tiny_ticket_files):
    result = runner.invoke(main, ["evaluate", "--data", str(tiny_ticket_files["train"]),
                                  "--model-dir", str(trained_model_dir)])
    assert result.exit_code != 0
    assert "trained on" in result.output


def test_paired_bootstrap_vouches_for_a_clear_difference_and_not_for_none():
    from smart_support.training.metrics import paired_bootstrap

    truth = ["Billing", "Legal", "Technical", "Other"] * 25
    theirs = list(truth)
    for i in range(0, 100, 5):  # 20 tickets they get wrong and we get right
        theirs[i] = "Other" if truth[i] != "Other" else "Billing"
    report = paired_bootstrap(truth, truth, theirs, resamples=500, seed=1)
    assert report["macro_f1"] == 1.0 and report["against_macro_f1"] < 0.85
    assert report["difference"] == pytest.approx(1.0 - report["against_macro_f1"], abs=1.5e-4)
    assert 0 < report["bootstrap"]["ci95"][0] < report["difference"] < report["bootstrap"]["ci95"][1]
    assert report["bootstrap"]["share_above_0"] == 1.0
    assert report["tickets"] == {"only_model_right": 20, "only_against_right": 0, "both_wrong": 0}

    same = paired_bootstrap(truth, theirs, theirs, resamples=200)
    assert same["difference"] == 0.0 and same["bootstrap"]["ci95"] == [0.0, 0.0]
    assert same["tickets"]["only_model_right"] == same["tickets"]["only_against_right"] == 0


def test_compare_scores_two_served_models_on_one_file(runner, trained_model_dir,
                                                       tiny_ticket_files, tmp_path):
    out = tmp_path / "compare.json"
    result = runner.invoke(main, ["compare", "--data", str(tiny_ticket_files["test"]),
                                  "--model-dir", str(trained_model_dir),
                                  "--against", str(trained_model_dir), "--against-runtime", "torch",
                                  "--resamples", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "95% paired-bootstrap interval" in result.output
    report = json.loads(out.read_text())
    assert report["data"]["tickets"] == 30
    assert [f["tickets"] for f in report["data"]["files"]] == [30]
    assert (report["model"]["runtime"], report["against"]["runtime"]) == ("onnx", "torch")
    assert report["model"]["version"] == report["against"]["version"]
    # each figure is rounded to 4 places on its own
    assert report["difference"] == pytest.approx(
        report["model"]["macro_f1"] - report["against"]["macro_f1"], abs=1.5e-4)
    low, high = report["bootstrap"]["ci95"]
    assert low <= high and report["bootstrap"]["resamples"] == 200


def test_compare_pools_several_files_into_one_sample(runner, trained_model_dir,
                                                     tiny_ticket_files, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", make_tickets(5, seed=7))
    out = tmp_path / "pooled.json"
    result = runner.invoke(main, ["compare", "--data", str(tiny_ticket_files["test"]),
                                  "--data", str(other), "--model-dir", str(trained_model_dir),
                                  "--against", str(trained_model_dir), "--resamples", "200",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{tiny_ticket_files['test']} + {other}: 45 tickets" in result.output
    report = json.loads(out.read_text())
    assert [f["tickets"] for f in report["data"]["files"]] == [30, 15]
    # the same model on both sides: every resample agrees with itself
    assert report["difference"] == 0.0 and report["bootstrap"]["ci95"] == [0.0, 0.0]


def test_compare_refuses_the_same_tickets_twice(runner, trained_model_dir, tiny_ticket_files,
                                                tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(tiny_ticket_files["test"].read_bytes())
    result = runner.invoke(main, ["compare", "--data", str(tiny_ticket_files["test"]),
                                  "--data", str(copy), "--model-dir", str(trained_model_dir),
                                  "--against", str(trained_model_dir)])
    assert result.exit_code != 0
    assert f"{copy} is given twice" in result.output


def test_compare_refuses_a_file_either_model_was_trained_on(runner, trained_model_dir,
                                                             tiny_ticket_files):
    result = runner.invoke(main, ["compare", "--data", str(tiny_ticket_files["test"]),
                                  "--data", str(tiny_ticket_files["train"]),
                                  "--against", str(trained_model_dir),
                                  "--model-dir", str(trained_model_dir)])
    assert result.exit_code != 0
    assert f"{tiny_ticket_files['train']} is the file this model was trained on" in result.output


def test_compare_names_a_missing_model_directory(runner, trained_model_dir, tiny_ticket_files,
                                                 tmp_path):
    result = runner.invoke(main, ["compare", "--data", str(tiny_ticket_files["test"]),
                                  "--model-dir", str(trained_model_dir),
                                  "--against", str(tmp_path / "no-such-model")])
    assert result.exit_code != 0
    assert "no-such-model: model directory missing" in result.output


def test_a_distilbert_checkpoint_works_as_the_base(runner, tmp_path):
    base = build_tiny_checkpoint(tmp_path / "distil", "distilbert")
    data = write_jsonl(tmp_path / "train.jsonl", make_tickets(15, seed=3))
    out = tmp_path / "models"
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(out),
                                  "--base-model", str(base), "--epochs", "2", "--max-tokens", "32",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    artifacts = load_artifacts(out)
    assert artifacts.model.config.model_type == "distilbert"
    assert "validation" in result.output


def test_categories_are_data_and_csv_input_works(runner, tmp_path, tiny_base_model):
    import csv

    categories = {"Sales": ["quote", "demo", "trial", "seats"],
                  "Shipping": ["parcel", "courier", "tracking", "delivery"],
                  "Billing": ["refund", "invoice", "charged", "card"],
                  "Technical": ["login", "error", "crash", "api"]}
    rows = make_tickets(12, seed=4, categories=categories)
    data = tmp_path / "four.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject", "description", "category", "urgency"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "models"
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(out),
                                  "--base-model", str(tiny_base_model), "--epochs", "1",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert load_artifacts(out).labels == ["Billing", "Sales", "Shipping", "Technical"]


@pytest.mark.parametrize("line, message", [
    ('{"description": "x", "category": "A"}', "missing urgency"),
    ('{"description": "x", "category": "A", "urgency": 7}', "urgency 7.0 is outside [0, 1]"),
    ('{"description": "x", "category": "A", "urgency": "high"}', "urgency 'high' is not a number"),
    ('not json', "invalid JSON"),
])
def test_bad_training_rows_are_refused_with_their_line(runner, tmp_path, line, message):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"description": "ok", "category": "A", "urgency": 0.1}\n' + line + "\n")
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert f"bad.jsonl:2: {message}" in result.output


def test_a_single_category_is_refused(runner, tmp_path, tiny_base_model):
    data = write_jsonl(tmp_path / "one.jsonl",
                       [{"description": f"x {i}", "category": "A", "urgency": 0.1} for i in range(5)])
    result = runner.invoke(main, ["train", "--data", str(data), "--base-model", str(tiny_base_model),
                                  "--out", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert "at least two categories" in result.output


def test_validation_can_hold_out_whole_groups(runner, tmp_path, tiny_base_model):
    rows = sorted(make_tickets(12, seed=5), key=lambda row: row["category"])
    for i, row in enumerate(rows):
        row["source"] = f"writer-{i % 4}"  # every writer covers every category
    data = write_jsonl(tmp_path / "grouped.jsonl", rows)
    out = tmp_path / "models"
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(out),
                                  "--base-model", str(tiny_base_model), "--epochs", "1",
                                  "--validation-group-field", "source", "--no-progress"])
    assert result.exit_code == 0, result.output
    held = json.loads((out / "metadata.json").read_text())["training_data"]
    assert len(held["validation_groups"]) == 1
    assert held["validation_tickets"] == 9


def test_a_missing_group_is_refused(runner, tmp_path, tiny_base_model):
    data = write_jsonl(tmp_path / "nogroup.jsonl", make_tickets(5, seed=6))
    result = runner.invoke(main, ["train", "--data", str(data), "--base-model",
                                  str(tiny_base_model), "--validation-group-field", "source",
                                  "--out", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert "missing source" in result.output


def test_a_base_tokenizer_s_own_truncation_and_padding_are_not_saved(runner, tmp_path):
    """The packaged MiniLM's tokenizer.json pads and truncates to 128; the token budget replaces
    both, and checkpoints must not depend on which code path touched the tokenizer last."""
    base = build_tiny_checkpoint(tmp_path / "base", "bert")
    path = base / "tokenizer.json"
    config = json.loads(path.read_text())
    config["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst",
                            "stride": 0}
    config["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right",
                         "pad_to_multiple_of": None, "pad_id": 0, "pad_type_id": 0,
                         "pad_token": "[PAD]"}
    path.write_text(json.dumps(config))
    data = write_jsonl(tmp_path / "train.jsonl", make_tickets(10, seed=5))
    out = tmp_path / "models"
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(out), "--base-model",
                                  str(base), "--epochs", "1", "--max-tokens", "32",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    for saved in (out / "classifier" / "tokenizer.json",
                  out / "onnx" / "classifier" / "tokenizer.json"):
        config = json.loads(saved.read_text())
        assert config["truncation"] is None and config["padding"] is None, saved


def test_alerts_can_be_scored_at_another_raise_threshold():
    truth = [0.9, 0.85, 0.95, 0.3, 0.5]
    predicted = [0.82, 0.79, 0.75, 0.78, 0.2]
    at_contract = urgency_metrics(truth, predicted, 0.8)["alerts"]
    lower = urgency_metrics(truth, predicted, 0.8, raise_above=0.77)["alerts"]
    assert (at_contract["raised"], at_contract["deserved"]) == (1, 3)
    assert (at_contract["precision"], at_contract["recall"]) == (1.0, round(1 / 3, 4))
    # deserved alerts still follow the true urgency above 0.8; only raising moves
    assert (lower["threshold"], lower["raised"], lower["deserved"]) == (0.8, 3, 3)
    assert (lower["precision"], lower["recall"]) == (round(2 / 3, 4), round(2 / 3, 4))
