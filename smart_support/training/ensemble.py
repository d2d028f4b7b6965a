"""Fit the transformer + TF-IDF baseline blend on the model's validation split (ensemble.json).

The blend's weight is the one whose validation macro-F1 is best (a tie goes to the transformer).
Then everything the service decides from probabilities is fitted again on the blend, as training
fits it on the transformer alone: a calibration temperature, the needs-review threshold, the
billing rule's confidence ceiling and the confidence histogram that drift compares with.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from smart_support.training.metrics import (
    apply_temperature, category_metrics, confidence_histogram, fit_temperature, reliability,
    review_threshold,
)

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def fit_blend(transformer: np.ndarray, baseline: np.ndarray, truth_idx, texts, labels,
              review_precision: float) -> dict:
    """The blend of two probability matrices (rows: validation tickets, columns: `labels`)
    that scores best on these tickets, and the decisions fitted on it."""
    from smart_support.inference.predictor import blend_probabilities
    from smart_support.training.train import rule_sweep

    truth_idx = np.asarray(truth_idx)
    truth = [labels[i] for i in truth_idx]

    def macro_f1(probs):
        return category_metrics(truth, [labels[i] for i in probs.argmax(1)], labels)["macro_f1"]

    by_weight = {w: macro_f1(blend_probabilities(transformer, baseline, w)) for w in WEIGHTS}
    weight = max(WEIGHTS, key=lambda w: (by_weight[w], -w))
    mixed = blend_probabilities(transformer, baseline, weight)
    temperature = fit_temperature(mixed, truth_idx)
    tempered = apply_temperature(mixed, temperature)
    review = review_threshold(tempered.max(1), tempered.argmax(1) == truth_idx, review_precision)
    return {
        "baseline_weight": weight,
        "validation_macro_f1_by_weight": {str(w): f1 for w, f1 in by_weight.items()},
        "calibration": {"temperature": round(temperature, 4), "fitted_on": "validation split",
                        "validation_ece_before": reliability(mixed, truth_idx)["ece"],
                        "validation_ece_after": reliability(tempered, truth_idx)["ece"],
                        "validation_confidence_histogram": confidence_histogram(
                            tempered.max(1))},
        "review": review,
        "validation": {"tickets": int(len(truth_idx)),
                       "macro_f1": {"transformer": by_weight[0.0], "baseline": by_weight[1.0],
                                    "ensemble": by_weight[weight]},
                       "billing_rule_by_max_confidence": rule_sweep(texts, tempered, labels,
                                                                    truth)},
    }


def fit_ensemble(settings, data: Path | None = None) -> dict:
    """Fit the blend for the model in `settings.model_dir`, as the service would run it
    (runtime, quantization, token budget from `settings`), on its validation split rebuilt
    from its training file; write ensemble.json there and return it."""
    from smart_support.inference.artifacts import ENSEMBLE_FILE, load_artifacts
    from smart_support.inference.baseline import BaselinePredictor
    from smart_support.inference.predictor import Predictor, Ticket, head_and_tail, ticket_text
    from smart_support.training.data import validation_tickets

    artifacts = load_artifacts(settings.model_dir, settings.runtime)
    labels = list(artifacts.labels)
    tickets = validation_tickets(artifacts.metadata, data)
    predictor = Predictor(artifacts, settings.max_tokens, settings.inference_batch_size,
                          settings.quantize)
    answers, _ = predictor.predict([Ticket(t.subject, t.description) for t in tickets])
    transformer = np.array([[a.scores[label] for label in labels] for a in answers])
    texts = [ticket_text(t.subject, t.description) for t in tickets]
    baseline, _ = BaselinePredictor(artifacts.baseline).predict_texts(
        [head_and_tail(text, predictor.budget.window) for text in texts])  # as a Blend reads
    truth_idx = [labels.index(t.category) for t in tickets]
    precision = float(artifacts.metadata.get("review", {}).get("target_precision", 0.97))
    fitted = fit_blend(transformer, baseline, truth_idx, texts, labels, precision)
    ensemble = {"model_version": artifacts.version, "labels": labels,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "fitted_with": {"runtime": settings.runtime, "quantize": settings.quantize,
                                "max_tokens": settings.max_tokens},
                **fitted}
    path = artifacts.model_dir / ENSEMBLE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(ensemble, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return ensemble
