"""The one place that reads and verifies the model directory.

Layout (written by `smart-support train`):
    classifier/         Hugging Face checkpoint (config.json with id2label, weights, tokenizer)
    label_encoder.pkl   scikit-learn LabelEncoder; classes must equal the classifier's labels
    urgency.json        ridge regression over the classifier's mean-pooled hidden states
    baseline.pkl        TF-IDF + logistic regression / ridge, trained on the same data
    metadata.json       version, base model, training-data digest, file digests, metrics
    onnx/               the encoders exported for ONNX Runtime (inference/runtime.py)
    ensemble.json       the transformer + baseline blend fitted on the validation split
                        (`smart-support ensemble`); read only with SMART_SUPPORT_ENSEMBLE on

Pickle runs code when loaded, so a .pkl file is only unpickled from the configured directory
and only after its SHA-256 matches the digest that training recorded in metadata.json.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
CLASSIFIER_DIR = "classifier"
LABEL_ENCODER_FILE = "label_encoder.pkl"
URGENCY_FILE = "urgency.json"
BASELINE_FILE = "baseline.pkl"
ENSEMBLE_FILE = "ensemble.json"
DIGESTED_FILES = (LABEL_ENCODER_FILE, URGENCY_FILE, BASELINE_FILE)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ArtifactError(Exception):
    """An artifact is missing or disagrees with the others; `path` names the file at fault."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Artifacts:
    model_dir: Path
    metadata: dict
    labels: list[str]
    tokenizer: Any
    model: Any
    urgency: dict
    baseline: dict
    runtime: str = "torch"
    pad_token_id: int = 0
    export_dir: Path | None = None  # onnx runtime: the classifier's export
    export: dict | None = None      # ... and its encoder.json

    @property
    def version(self) -> str:
        return self.metadata["version"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ArtifactError(path, "missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, "must hold a JSON object")
    return value


def load_verified_pickle(path: Path, expected_sha256: str | None) -> Any:
    """Unpickle `path` only when its digest matches the one recorded at training time."""
    if not path.is_file():
        raise ArtifactError(path, "missing")
    if not expected_sha256:
        raise ArtifactError(path, f"no digest recorded for it in {METADATA_FILE}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(path, f"SHA-256 {actual[:12]}... does not match the digest "
                                  f"{expected_sha256[:12]}... recorded in {METADATA_FILE}")
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise ArtifactError(path, f"cannot be unpickled ({type(exc).__name__}: {exc})") from None


def classifier_labels(config_path: Path) -> list[str]:
    """The labels in id order from a checkpoint's config.json."""
    config = read_json(config_path)
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ArtifactError(config_path, "has no id2label mapping")
    try:
        ids = sorted(int(k) for k in id2label)
    except ValueError:
        raise ArtifactError(config_path, "id2label keys must be integers") from None
    if ids != list(range(len(ids))):
        raise ArtifactError(config_path, "id2label ids must run 0..n-1")
    return [str(id2label[str(i)]) for i in ids]


def load_artifacts(model_dir: Path | str, runtime: str = "torch") -> Artifacts:
    """Load and cross-check every artifact, or raise ArtifactError naming the faulty file.
    runtime "torch" loads the checkpoint; "onnx" checks its export and never imports torch."""
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise ArtifactError(model_dir, "model directory missing; build it with `make model`")
    metadata = read_json(model_dir / METADATA_FILE)
    for key in ("version", "labels", "files"):
        if key not in metadata:
            raise ArtifactError(model_dir / METADATA_FILE, f"lacks the key {key!r}")
    digests = metadata["files"]

    classifier_dir = model_dir / CLASSIFIER_DIR
    labels = classifier_labels(classifier_dir / "config.json")
    if labels != list(metadata["labels"]):
        raise ArtifactError(classifier_dir / "config.json",
                            f"labels {labels} disagree with {METADATA_FILE} {metadata['labels']}")
    weights = next((classifier_dir / n for n in WEIGHT_FILES if (classifier_dir / n).is_file()),
                   None)
    if weights is None:
        raise ArtifactError(classifier_dir / WEIGHT_FILES[0], "missing (no model weights)")

    encoder = load_verified_pickle(model_dir / LABEL_ENCODER_FILE, digests.get(LABEL_ENCODER_FILE))
    classes = [str(c) for c in getattr(encoder, "classes_", [])]
    if classes != labels:
        raise ArtifactError(model_dir / LABEL_ENCODER_FILE,
                            f"classes {classes} disagree with the classifier's labels {labels}")

    urgency_path = model_dir / URGENCY_FILE
    if digests.get(URGENCY_FILE) and urgency_path.is_file() \
            and sha256_file(urgency_path) != digests[URGENCY_FILE]:
        raise ArtifactError(urgency_path, f"does not match the digest in {METADATA_FILE}")
    urgency = read_json(urgency_path)
    temperature = metadata.get("calibration", {}).get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ArtifactError(model_dir / METADATA_FILE, "calibration temperature must be > 0")
    baseline = load_verified_pickle(model_dir / BASELINE_FILE, digests.get(BASELINE_FILE))
    if not isinstance(baseline, dict) or not {"features", "classifier", "urgency"} <= set(baseline):
        raise ArtifactError(model_dir / BASELINE_FILE, "not a baseline this version can use; "
                                                       "retrain the model")
    if list(getattr(baseline["classifier"], "classes_", [])) != labels:
        raise ArtifactError(model_dir / BASELINE_FILE, "baseline classes disagree with the labels")

    hidden = hidden_size(classifier_dir / "config.json")
    if len(urgency.get("coef", [])) != hidden:
        raise ArtifactError(urgency_path, f"has {len(urgency.get('coef', []))} coefficients, "
                                          f"the classifier's hidden size is {hidden}")
    loaded = Artifacts(model_dir, metadata, labels, None, None, urgency, baseline, runtime)
    if runtime == "torch":
        loaded.tokenizer, loaded.model = _load_checkpoint(classifier_dir)
        loaded.pad_token_id = int(loaded.tokenizer.pad_token_id or 0)
    else:
        from smart_support.inference import runtime as rt

        loaded.export_dir, loaded.export = rt.check_classifier_export(model_dir, weights, labels,
                                                                      urgency)
        loaded.tokenizer = rt.load_tokenizer(loaded.export_dir, loaded.export)
        loaded.pad_token_id = int(loaded.export["pad_token_id"])
    return loaded


def hidden_size(config_path: Path) -> int:
    config = read_json(config_path)
    return int(config.get("hidden_size") or config.get("dim") or 0)


def _load_checkpoint(classifier_dir: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(classifier_dir, local_files_only=True)
    except Exception as exc:
        raise ArtifactError(classifier_dir, f"tokenizer files unreadable ({exc})") from None
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            classifier_dir, local_files_only=True)
    except Exception as exc:
        raise ArtifactError(classifier_dir, f"weights unreadable ({exc})") from None
    model.eval()
    return tokenizer, model


def load_ensemble(model_dir: Path, metadata: dict) -> dict:
    """`model_dir`'s ensemble.json, checked against the model (its metadata.json) that it
    must have been fitted for."""
    model_dir = Path(model_dir)
    path = model_dir / ENSEMBLE_FILE
    if not path.is_file():
        raise ArtifactError(path, "missing; fit it with `smart-support ensemble --model-dir "
                                  f"{model_dir.name}` (`make model` does)")
    ensemble = read_json(path)
    if ensemble.get("model_version") != metadata.get("version"):
        raise ArtifactError(path, f"fitted for model {ensemble.get('model_version')!r}, this "
                                  f"directory holds {metadata.get('version')!r}; fit it again")
    if ensemble.get("labels") != list(metadata.get("labels") or []):
        raise ArtifactError(path, f"labels {ensemble.get('labels')} disagree with the "
                                  f"model's {metadata.get('labels')}")
    weight = ensemble.get("baseline_weight")
    temperature = (ensemble.get("calibration") or {}).get("temperature")
    threshold = (ensemble.get("review") or {}).get("threshold")
    sweep = (ensemble.get("validation") or {}).get("billing_rule_by_max_confidence")
    if not _number_in(weight, 0.0, 1.0) or not _number_in(threshold, 0.0, 1.0) \
            or not _number_in(temperature, 1e-3, 1e3) or not isinstance(sweep, dict) or not sweep:
        raise ArtifactError(path, "needs baseline_weight and review.threshold in [0, 1], "
                                  "calibration.temperature > 0 and "
                                  "validation.billing_rule_by_max_confidence; fit it again")
    return ensemble


def _number_in(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and low <= value <= high


def fitted_metadata(metadata: dict, ensemble: dict | None) -> dict:
    """The model's metadata as the service's decisions read it: with an ensemble, its
    calibration, needs-review threshold and billing-rule sweep, all fitted on the blend,
    replace the transformer's own."""
    if ensemble is None:
        return metadata
    validation = {**(metadata.get("validation") or {}), **ensemble["validation"]}
    return {**metadata, "calibration": ensemble["calibration"], "review": ensemble["review"],
            "validation": validation,
            "ensemble": {"baseline_weight": ensemble["baseline_weight"],
                         "fitted_with": ensemble.get("fitted_with")}}
