"""Classification and urgency metrics shared by training (validation) and evaluation reports."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def category_metrics(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0)
    return {
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro",
                                         zero_division=0)), 4),
        "accuracy": round(float(np.mean([t == p for t, p in zip(truth, predicted)])), 4),
        "per_category": {
            label: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                    "f1": round(float(f), 4), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {
            "labels": labels,
            "rows_true_columns_predicted": confusion_matrix(truth, predicted, labels=labels).tolist(),
        },
    }


def urgency_metrics(truth: Sequence[float], predicted: Sequence[float], alert_threshold: float) -> dict:
    truth = np.asarray(truth, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    rho = spearmanr(truth, predicted).statistic if len(truth) > 1 else float("nan")
    actual_alert = truth > alert_threshold
    raised = predicted > alert_threshold
    hits = int(np.sum(actual_alert & raised))
    return {
        "spearman": round(float(np.nan_to_num(rho)), 4),
        "mae": round(float(np.mean(np.abs(truth - predicted))), 4),
        "alerts": {
            "threshold": alert_threshold,
            "raised": int(raised.sum()),
            "deserved": int(actual_alert.sum()),
            "precision": round(hits / raised.sum(), 4) if raised.sum() else None,
            "recall": round(hits / actual_alert.sum(), 4) if actual_alert.sum() else None,
        },
    }
