"""Predictions from the shipped TF-IDF baseline (fitted by training/baseline.py).

It answers when the circuit breaker has opened on the transformer, and in every evaluation
report beside the transformer.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from smart_support.inference.predictor import Prediction, Ticket, ticket_text


class BaselinePredictor:
    """The same interface as Predictor, backed by TF-IDF models: no torch, ~1 ms a ticket."""

    def __init__(self, baseline: dict):
        self.features = baseline["features"]
        self.classifier = baseline["classifier"]
        self.regressor = baseline["urgency"]
        self.labels = [str(c) for c in self.classifier.classes_]

    def predict_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (columns in `labels` order) and urgency in [0, 1]."""
        matrix = self.features.transform(list(texts))
        return (self.classifier.predict_proba(matrix),
                np.clip(self.regressor.predict(matrix), 0.0, 1.0))

    def predict(self, tickets: Sequence[Ticket]) -> tuple[list[Prediction], dict[str, float]]:
        started = time.perf_counter()
        probs, urgency = self.predict_texts([ticket_text(t.subject, t.description)
                                             for t in tickets])
        results = [Prediction({label: float(p) for label, p in zip(self.labels, row)}, float(u))
                   for row, u in zip(probs, urgency)]
        return results, {"baseline": time.perf_counter() - started}
