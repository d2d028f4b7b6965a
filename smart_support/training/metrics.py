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


def paired_bootstrap(truth: Sequence[str], ours: Sequence[str], theirs: Sequence[str],
                     resamples: int = 2000, seed: int = 0) -> dict:
    """Macro-F1 of two sets of answers to the same tickets, their difference (ours - theirs),
    and a 95% interval of that difference from resampling the tickets with replacement, both
    sets scored on each resample: how much of the difference one file can vouch for."""
    truth, ours, theirs = np.asarray(truth), np.asarray(ours), np.asarray(theirs)
    labels = sorted(set(truth) | set(ours) | set(theirs))

    def macro_f1(rows, answers):
        return f1_score(truth[rows], answers[rows], labels=labels, average="macro",
                        zero_division=0)

    every = np.arange(len(truth))
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, len(truth), len(truth))
        differences[i] = macro_f1(rows, ours) - macro_f1(rows, theirs)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "macro_f1": round(float(macro_f1(every, ours)), 4),
        "against_macro_f1": round(float(macro_f1(every, theirs)), 4),
        "difference": round(float(macro_f1(every, ours) - macro_f1(every, theirs)), 4),
        "bootstrap": {"resamples": resamples, "seed": seed,
                      "ci95": [round(float(low), 4), round(float(high), 4)],
                      "share_at_least_minus_0.01": round(float((differences >= -0.01).mean()), 3),
                      "share_above_0": round(float((differences > 0).mean()), 3)},
        "tickets": {"only_model_right": int(((ours == truth) & (theirs != truth)).sum()),
                    "only_against_right": int(((ours != truth) & (theirs == truth)).sum()),
                    "both_wrong": int(((ours != truth) & (theirs != truth)).sum())},
    }


def urgency_metrics(truth: Sequence[float], predicted: Sequence[float], alert_threshold: float,
                    raise_above: float | None = None) -> dict:
    """Spearman, MAE, and alerts: deserved where the true urgency is above `alert_threshold`,
    raised where the predicted one is above it, or above `raise_above` when that is given (what
    another alert threshold would do)."""
    truth = np.asarray(truth, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    rho = spearmanr(truth, predicted).statistic if len(truth) > 1 else float("nan")
    actual_alert = truth > alert_threshold
    raised = predicted > (alert_threshold if raise_above is None else raise_above)
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


def reliability(probs: np.ndarray, truth_idx: Sequence[int], bins: int = 15) -> dict:
    """Expected calibration error of the top-class confidence, and the per-bin table behind a
    reliability diagram (bins with no tickets are left out)."""
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(1)
    correct = probs.argmax(1) == np.asarray(truth_idx)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if not inside.any():
            continue
        gap = abs(confidence[inside].mean() - correct[inside].mean())
        ece += inside.mean() * gap
        table.append({"low": round(float(low), 4), "high": round(float(high), 4),
                      "tickets": int(inside.sum()),
                      "confidence": round(float(confidence[inside].mean()), 4),
                      "accuracy": round(float(correct[inside].mean()), 4)})
    return {"ece": round(float(ece), 4), "bins": table}


def fit_temperature(probs: np.ndarray, truth_idx: Sequence[int]) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(log p / T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    log_probs = np.log(np.clip(np.asarray(probs, dtype=float), 1e-12, 1.0))
    rows = np.arange(len(log_probs))
    truth_idx = np.asarray(truth_idx)

    def nll(log_t):
        return -log_softmax(log_probs / np.exp(log_t), axis=1)[rows, truth_idx].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    from smart_support.inference.predictor import temper

    return temper(probs, temperature)


def review_threshold(confidence: Sequence[float], correct: Sequence[bool],
                     target_precision: float) -> dict:
    """The lowest confidence threshold whose auto-routed tickets (confidence >= threshold)
    reach `target_precision`; below it a ticket goes to a person."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    chosen = 1.0
    for threshold in np.unique(np.concatenate([[0.0], confidence])):
        routed = confidence >= threshold
        if routed.any() and correct[routed].mean() >= target_precision:
            chosen = float(threshold)
            break
    routed = confidence >= chosen
    return {"threshold": round(chosen, 4), "target_precision": target_precision,
            "auto_precision": round(float(correct[routed].mean()), 4) if routed.any() else None,
            "review_share": round(float(1 - routed.mean()), 4)}


CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def confidence_histogram(confidence: Sequence[float]) -> dict:
    """Share of tickets per confidence band; the same bands for training and live traffic."""
    counts, _ = np.histogram(np.clip(confidence, 0.0, 1.0), bins=CONFIDENCE_EDGES)
    total = max(1, int(counts.sum()))
    return {f"{low:.2f}-{high:.2f}": round(int(c) / total, 4)
            for low, high, c in zip(CONFIDENCE_EDGES[:-1], CONFIDENCE_EDGES[1:], counts)}
