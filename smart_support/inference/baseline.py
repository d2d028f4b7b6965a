"""Predictions from the shipped TF-IDF baseline (fitted by training/baseline.py).

It answers when the circuit breaker has opened on the transformer, and in every evaluation
report beside the transformer.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Sequence

import numpy as np

from smart_support.inference.predictor import Prediction, Ticket, softmax, ticket_text

log = logging.getLogger(__name__)

# Texts on which the per-text path must agree with scikit-learn before it is used: short,
# long, accented, whitespace runs, and none of the vocabulary at all.
PROBES = ("", "   ", "Refund the double charge on invoice INV-2231 please",
          "The API returns 500 errors since the deploy; login  fails\n\ttoo",
          "Demande de résiliation du contrat et suppression des données (RGPD)",
          "zzqx vvkj", "Our GDPR data processing agreement needs a signature " * 20)
AGREEMENT = 1e-9


class LinearTfidf:
    """The baseline's answers computed one text at a time: scikit-learn's own analyzers give
    the n-grams, then the same arithmetic as `FeatureUnion.transform` (sublinear tf, idf, l2
    norm per vectorizer) followed by the classifier's softmax and the ridge's dot product.

    Why: `transform` builds and checks a sparse matrix for every call. Measured on the test
    tickets, one per call: 1.6 to 1.9 ms a ticket through scikit-learn, of which its analyzers
    take 0.1 ms, against 0.3 to 0.5 ms here (README, "Model and accuracy")."""

    def __init__(self, features, classifier, regressor):
        weights = np.vstack([classifier.coef_, np.atleast_2d(regressor.coef_)])
        self.parts, offset = [], 0
        for _, vectorizer in features.transformer_list:
            size = len(vectorizer.idf_)
            self.parts.append((vectorizer.build_analyzer(), vectorizer.vocabulary_,
                               vectorizer.idf_, vectorizer.sublinear_tf,
                               np.ascontiguousarray(weights[:, offset:offset + size].T)))
            offset += size
        if offset != weights.shape[1]:
            raise ValueError(f"{offset} features from the vectorizers, {weights.shape[1]} "
                             "weights in the models")
        self.intercept = np.concatenate([np.atleast_1d(classifier.intercept_),
                                         np.atleast_1d(regressor.intercept_)]).astype(np.float64)
        self.classes = len(classifier.classes_)

    @classmethod
    def matching(cls, features, classifier, regressor) -> "LinearTfidf | None":
        """One for these fitted models if they have the shape it computes and it agrees with
        scikit-learn on `PROBES`; None otherwise (the caller keeps scikit-learn)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        shaped = (isinstance(features, FeatureUnion) and features.transformer_weights is None
                  and all(isinstance(v, TfidfVectorizer) and v.norm == "l2" and v.use_idf
                          and not v.binary for _, v in features.transformer_list)
                  and len(classifier.classes_) > 2
                  and np.shape(classifier.coef_)[0] == len(classifier.classes_)
                  and np.ndim(regressor.coef_) == 1)
        if not shaped:
            return None
        try:
            fast = cls(features, classifier, regressor)
        except (AttributeError, ValueError) as exc:
            log.warning("TF-IDF baseline: per-text path unavailable (%s)", exc)
            return None
        matrix = features.transform(list(PROBES))
        probs, urgency = fast.predict(PROBES)
        if not (np.allclose(probs, classifier.predict_proba(matrix), rtol=0, atol=AGREEMENT)
                and np.allclose(urgency, np.clip(regressor.predict(matrix), 0.0, 1.0),
                                rtol=0, atol=AGREEMENT)):
            log.warning("TF-IDF baseline: per-text path disagrees with scikit-learn; not used")
            return None
        return fast

    def raw_scores(self, text: str) -> np.ndarray:
        """Class logits, then the urgency before clipping."""
        scores = self.intercept.copy()
        for analyzer, vocabulary, idf, sublinear, weights in self.parts:
            counts = Counter(j for j in map(vocabulary.get, analyzer(text)) if j is not None)
            if not counts:
                continue
            columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if sublinear:
                values = np.log(values) + 1.0
            values *= idf[columns]
            values /= np.sqrt(values @ values)
            scores += values @ weights[columns]
        return scores

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        raw = np.array([self.raw_scores(t) for t in texts]).reshape(
            len(texts), len(self.intercept))
        return (softmax(raw[:, :self.classes]),
                np.clip(raw[:, self.classes], 0.0, 1.0))


class BaselinePredictor:
    """The same interface as Predictor, backed by TF-IDF models: no torch, under 1 ms a ticket."""

    def __init__(self, baseline: dict):
        self.features = baseline["features"]
        self.classifier = baseline["classifier"]
        self.regressor = baseline["urgency"]
        self.labels = [str(c) for c in self.classifier.classes_]
        self.per_text = LinearTfidf.matching(self.features, self.classifier, self.regressor)

    def predict_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (columns in `labels` order) and urgency in [0, 1]."""
        if not texts:  # scikit-learn's transform refuses an empty list
            return np.zeros((0, len(self.labels))), np.zeros(0)
        if self.per_text is not None:
            return self.per_text.predict(texts)
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
