"""Predictions from the shipped TF-IDF baseline (fitted by training/baseline.py).

It answers when the circuit breaker has opened on the transformer, and in every evaluation
report beside the transformer.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from smart_support.inference.predictor import Prediction, Ticket, ticket_text


def predict_baseline(baseline: dict, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    categories = [str(c) for c in baseline["classifier"].predict(list(texts))]
    urgency = np.clip(baseline["urgency"].predict(list(texts)), 0.0, 1.0)
    return categories, urgency


class BaselinePredictor:
    """The same interface as Predictor, backed by TF-IDF models: no torch, ~1 ms a ticket."""

    def __init__(self, baseline: dict):
        self.classifier = baseline["classifier"]
        self.regressor = baseline["urgency"]
        self.labels = [str(c) for c in self.classifier.classes_]

    def predict(self, tickets: Sequence[Ticket]) -> tuple[list[Prediction], dict[str, float]]:
        started = time.perf_counter()
        texts = [ticket_text(t.subject, t.description) for t in tickets]
        probs = self.classifier.predict_proba(texts)
        urgency = np.clip(self.regressor.predict(texts), 0.0, 1.0)
        results = [Prediction({label: float(p) for label, p in zip(self.labels, row)}, float(u))
                   for row, u in zip(probs, urgency)]
        return results, {"baseline": time.perf_counter() - started}
