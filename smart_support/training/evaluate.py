"""Evaluation report: the transformer, the routing rule and the TF-IDF baseline on one file."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from smart_support.config import Settings, override_rule
from smart_support.inference.artifacts import fitted_metadata, load_artifacts, load_ensemble
from smart_support.inference.baseline import BaselinePredictor
from smart_support.inference.predictor import Predictor, Ticket, blend_of, ticket_text
from smart_support.routing import OverrideRule, route_many
from smart_support.training.data import DataError, file_sha256, load_tickets
from smart_support.training.metrics import (
    apply_temperature, category_metrics, paired_bootstrap, reliability, review_threshold,
    urgency_metrics,
)


def override_effect(truth, model_only, final) -> dict:
    changed = [(t, m, f) for t, m, f in zip(truth, model_only, final) if m != f]
    return {
        "changed": len(changed),
        "changed_to_correct": sum(f == t for t, m, f in changed),
        "changed_from_correct": sum(m == t for t, m, f in changed),
        "changed_wrong_to_wrong": sum(m != t and f != t for t, m, f in changed),
    }


def calibration_report(predictions, truth, labels, fitted: dict, settings: Settings) -> dict:
    """ECE before and after the stored temperature, and what the needs-review threshold does.
    `fitted`: the metadata the service decides from (artifacts.fitted_metadata)."""
    import numpy as np

    labels = list(labels)
    known = [i for i, t in enumerate(truth) if t in labels]
    calibrated = np.array([[predictions[i].scores[l] for l in labels] for i in known])
    truth_idx = np.array([labels.index(truth[i]) for i in known])
    temperature = float(fitted.get("calibration", {}).get("temperature", 1.0))
    raw = apply_temperature(calibrated, 1.0 / temperature)  # undo: p_raw ~ p_cal ** T
    threshold = (settings.review_threshold if settings.review_threshold is not None
                 else float((fitted.get("review") or {}).get("threshold", 0.0)))
    confidence = calibrated.max(1)
    routed = confidence >= threshold
    correct = calibrated.argmax(1) == truth_idx
    return {
        "temperature": temperature,
        "before": reliability(raw, truth_idx),
        "after": reliability(calibrated, truth_idx),
        "needs_review": {
            "threshold": threshold,
            "review_share": round(float(1 - routed.mean()), 4),
            "auto_routed_precision": round(float(correct[routed].mean()), 4) if routed.any() else None,
            "precision_of_all": round(float(correct.mean()), 4),
            "threshold_for_97_percent_here": review_threshold(confidence, correct, 0.97)["threshold"],
        },
    }


def reliability_plot(report: dict, path: Path) -> None:
    """Reliability diagram (accuracy against confidence per bin), before and after scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = report["calibration"]
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for key, style in (("before", "o--"), ("after", "s-")):
        bins = calibration[key]["bins"]
        axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                  label=f"{key} (ECE {calibration[key]['ece']:.3f})")
    axis.set_xlabel("confidence (top class)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{Path(report['data']['path']).name}: temperature "
                   f"{calibration['temperature']:.2f}")
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def refuse_training_file(data: Path | str, digest: str, artifacts) -> None:
    """A model is never scored on the file (SHA-256 `digest`) it was trained on."""
    if digest == artifacts.metadata.get("training_data", {}).get("sha256"):
        raise DataError(f"{data} is the file this model was trained on; "
                        "evaluate on held-out tickets instead")


class ServedAnswers(NamedTuple):
    predictions: list       # Prediction per ticket
    decisions: list         # RoutingDecision per ticket: the guarded rule applied
    rule: OverrideRule
    seconds: float          # spent predicting
    fitted: dict            # the metadata the decisions read (artifacts.fitted_metadata)


def served_answers(tickets, artifacts, settings: Settings) -> ServedAnswers:
    """What the service answers for each ticket, with `settings` as the service reads them."""
    texts = [ticket_text(t.subject, t.description) for t in tickets]
    ensemble = (load_ensemble(artifacts.model_dir, artifacts.metadata) if settings.ensemble
                else None)
    blend = blend_of(ensemble, BaselinePredictor(artifacts.baseline)) if ensemble else None
    predictor = Predictor(artifacts, settings.max_tokens, settings.inference_batch_size,
                          settings.quantize, blend=blend)
    started = time.perf_counter()
    predictions, _ = predictor.predict([Ticket(t.subject, t.description) for t in tickets])
    seconds = time.perf_counter() - started
    fitted = fitted_metadata(artifacts.metadata, ensemble)
    rule = override_rule(settings, fitted)
    return ServedAnswers(predictions, route_many(texts, [p.scores for p in predictions], rule),
                         rule, seconds, fitted)


def evaluate(data: Path | str, settings: Settings, alert_threshold: float = 0.8) -> dict:
    tickets = load_tickets(data)
    artifacts = load_artifacts(settings.model_dir, settings.runtime)
    digest = file_sha256(data)
    refuse_training_file(data, digest, artifacts)
    labels = list(artifacts.labels)
    labels += sorted({t.category for t in tickets} - set(labels))
    truth = [t.category for t in tickets]
    true_urgency = [t.urgency for t in tickets]
    texts = [ticket_text(t.subject, t.description) for t in tickets]

    predictions, guarded, rule, seconds, fitted = served_answers(tickets, artifacts, settings)
    scores = [p.scores for p in predictions]
    unguarded = route_many(texts, scores, replace(rule, max_confidence=float("inf")))
    model_only = [d.model_category for d in guarded]
    final = [d.category for d in guarded]
    always = [d.category for d in unguarded]

    baseline = BaselinePredictor(artifacts.baseline)
    base_probs, base_urgency = baseline.predict_texts(texts)
    base_categories = [baseline.labels[i] for i in base_probs.argmax(1)]
    calibration = calibration_report(predictions, truth, artifacts.labels, fitted, settings)
    return {
        "data": {"path": str(data), "sha256": digest, "tickets": len(tickets)},
        "model": {"version": artifacts.version, "runtime": settings.runtime,
                  "quantize": settings.quantize,
                  "ensemble": fitted.get("ensemble"),
                  "base_model": artifacts.metadata.get("base_model"),
                  "model_dir": str(artifacts.model_dir)},
        "transformer": {
            **category_metrics(truth, final, labels),
            "model_only": category_metrics(truth, model_only, labels),
            "urgency": urgency_metrics(true_urgency, [p.urgency for p in predictions],
                                       alert_threshold),
            "tickets_per_second": round(len(tickets) / seconds, 1),
        },
        "calibration": calibration,
        "billing_rule": {
            "guarded": {"max_confidence": rule.max_confidence, "enabled": rule.enabled,
                        **override_effect(truth, model_only, final)},
            "unguarded_for_comparison": {
                "macro_f1": category_metrics(truth, always, labels)["macro_f1"],
                **override_effect(truth, model_only, always)},
        },
        "baseline": {
            **category_metrics(truth, base_categories, labels),
            "urgency": urgency_metrics(true_urgency, base_urgency, alert_threshold),
        },
    }


def compare(files: list[Path | str], settings: Settings, against: Settings,
            resamples: int = 2000, seed: int = 0) -> dict:
    """Macro-F1 of two served models on the same tickets, and how sure the tickets are of the
    difference: a paired bootstrap (both models scored on each resample of the tickets).
    Several files are pooled into one sample, each refused if either model trained on it."""
    loaded = [load_artifacts(side.model_dir, side.runtime) for side in (settings, against)]
    tickets, described = [], []
    for path in files:
        rows = load_tickets(path)
        digest = file_sha256(path)
        if any(d["sha256"] == digest for d in described):
            raise DataError(f"{path} is given twice (same contents): its tickets would count "
                            "twice")
        for artifacts in loaded:
            refuse_training_file(path, digest, artifacts)
        tickets += rows
        described.append({"path": str(path), "sha256": digest, "tickets": len(rows)})
    sides = {}
    for name, side, artifacts in zip(("model", "against"), (settings, against), loaded):
        decisions = served_answers(tickets, artifacts, side).decisions
        sides[name] = {"version": artifacts.version, "model_dir": str(artifacts.model_dir),
                       "runtime": side.runtime, "quantize": side.quantize,
                       "ensemble": side.ensemble, "categories": [d.category for d in decisions]}
    paired = paired_bootstrap([t.category for t in tickets], sides["model"].pop("categories"),
                              sides["against"].pop("categories"), resamples, seed)
    sides["model"]["macro_f1"] = paired.pop("macro_f1")
    sides["against"]["macro_f1"] = paired.pop("against_macro_f1")
    return {"data": {"files": described, "tickets": len(tickets)}, **sides, **paired}


def render_comparison(report: dict) -> str:
    ours, theirs, boot = report["model"], report["against"], report["bootstrap"]
    return "\n".join([
        f"{' + '.join(f['path'] for f in report['data']['files'])}: "
        f"{report['data']['tickets']} tickets",
        f"  model   {ours['version']} ({ours['runtime']}, {ours['quantize']}"
        f"{', blended with its baseline' if ours.get('ensemble') else ''}): "
        f"macro-F1 {ours['macro_f1']:.4f}",
        f"  against {theirs['version']} ({theirs['runtime']}, {theirs['quantize']}"
        f"{', blended with its baseline' if theirs.get('ensemble') else ''}): "
        f"macro-F1 {theirs['macro_f1']:.4f}",
        f"  difference {report['difference']:+.4f}, 95% paired-bootstrap interval "
        f"[{boot['ci95'][0]:+.4f}, {boot['ci95'][1]:+.4f}] over {boot['resamples']} resamples",
        f"  tickets only the model gets right: {report['tickets']['only_model_right']}, "
        f"only the other: {report['tickets']['only_against_right']}, "
        f"both wrong: {report['tickets']['both_wrong']}",
    ])


def _blended(ensemble: dict | None) -> str:
    return f", blended with the baseline at {ensemble['baseline_weight']}" if ensemble else ""


def render_report(report: dict) -> str:
    t, b, rule = report["transformer"], report["baseline"], report["billing_rule"]
    served = "ensemble" if report["model"].get("ensemble") else "transformer"
    lines = [
        f"{report['data']['path']}: {report['data']['tickets']} tickets, "
        f"model {report['model']['version']} ({report['model']['runtime']} runtime, "
        f"{report['model']['quantize']}{_blended(report['model'].get('ensemble'))})",
        f"{'':28}{served:>12}{'baseline':>10}",
        f"{'macro-F1 (with rule)':28}{t['macro_f1']:>12.4f}{b['macro_f1']:>10.4f}",
        f"{'macro-F1 (model only)':28}{t['model_only']['macro_f1']:>12.4f}",
        f"{'accuracy':28}{t['accuracy']:>12.4f}{b['accuracy']:>10.4f}",
        f"{'urgency Spearman':28}{t['urgency']['spearman']:>12.4f}{b['urgency']['spearman']:>10.4f}",
        f"{'urgency MAE':28}{t['urgency']['mae']:>12.4f}{b['urgency']['mae']:>10.4f}",
    ]
    for name, m in ((served, t), ("baseline", b)):
        alerts = m["urgency"]["alerts"]
        lines.append(f"alerts > {alerts['threshold']} ({name}): raised {alerts['raised']}, "
                     f"deserved {alerts['deserved']}, precision {alerts['precision']}, "
                     f"recall {alerts['recall']}")
    lines.append(f"per category ({served}, with rule): precision / recall / F1 / support")
    for label, m in t["per_category"].items():
        lines.append(f"  {label:24} {m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f} / "
                     f"{m['support']}")
    cm = t["confusion_matrix"]
    lines.append("confusion (rows true, columns predicted): " + " ".join(cm["labels"]))
    for label, row in zip(cm["labels"], cm["rows_true_columns_predicted"]):
        lines.append(f"  {label:24} {row}")
    c = report["calibration"]
    lines.append(f"calibration: temperature {c['temperature']}, ECE {c['before']['ece']} -> "
                 f"{c['after']['ece']}; needs review below {c['needs_review']['threshold']}: "
                 f"{c['needs_review']['review_share']:.1%} of tickets, auto-routed precision "
                 f"{c['needs_review']['auto_routed_precision']}")
    g, u = rule["guarded"], rule["unguarded_for_comparison"]
    lines.append(f"billing rule (fires below confidence {g['max_confidence']}): changed "
                 f"{g['changed']}, to correct {g['changed_to_correct']}, from correct "
                 f"{g['changed_from_correct']}")
    lines.append(f"same rule unguarded: macro-F1 {u['macro_f1']}, changed {u['changed']}, "
                 f"to correct {u['changed_to_correct']}, from correct {u['changed_from_correct']}")
    return "\n".join(lines)
