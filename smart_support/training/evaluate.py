"""Evaluation report: the transformer, the routing rule and the TF-IDF baseline on one file."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from smart_support.config import Settings, override_rule
from smart_support.inference.artifacts import load_artifacts
from smart_support.inference.baseline import predict_baseline
from smart_support.inference.predictor import Predictor, Ticket, ticket_text
from smart_support.routing import route_many
from smart_support.training.data import DataError, file_sha256, load_tickets
from smart_support.training.metrics import category_metrics, urgency_metrics


def override_effect(truth, model_only, final) -> dict:
    changed = [(t, m, f) for t, m, f in zip(truth, model_only, final) if m != f]
    return {
        "changed": len(changed),
        "changed_to_correct": sum(f == t for t, m, f in changed),
        "changed_from_correct": sum(m == t for t, m, f in changed),
        "changed_wrong_to_wrong": sum(m != t and f != t for t, m, f in changed),
    }


def evaluate(data: Path | str, settings: Settings, alert_threshold: float = 0.8) -> dict:
    tickets = load_tickets(data)
    artifacts = load_artifacts(settings.model_dir)
    digest = file_sha256(data)
    if digest == artifacts.metadata.get("training_data", {}).get("sha256"):
        raise DataError(f"{data} is the file this model was trained on; "
                        "evaluate on held-out tickets instead")
    labels = list(artifacts.labels)
    labels += sorted({t.category for t in tickets} - set(labels))
    truth = [t.category for t in tickets]
    true_urgency = [t.urgency for t in tickets]
    texts = [ticket_text(t.subject, t.description) for t in tickets]

    predictor = Predictor(artifacts, settings.max_tokens, settings.inference_batch_size,
                          settings.quantize)
    started = time.perf_counter()
    predictions, _ = predictor.predict([Ticket(t.subject, t.description) for t in tickets])
    seconds = time.perf_counter() - started
    scores = [p.scores for p in predictions]
    rule = override_rule(settings)
    guarded = route_many(texts, scores, rule)
    unguarded = route_many(texts, scores, replace(rule, max_confidence=float("inf")))
    model_only = [d.model_category for d in guarded]
    final = [d.category for d in guarded]
    always = [d.category for d in unguarded]

    base_categories, base_urgency = predict_baseline(artifacts.baseline, texts)
    return {
        "data": {"path": str(data), "sha256": digest, "tickets": len(tickets)},
        "model": {"version": artifacts.version, "quantize": settings.quantize,
                  "base_model": artifacts.metadata.get("base_model"),
                  "model_dir": str(artifacts.model_dir)},
        "transformer": {
            **category_metrics(truth, final, labels),
            "model_only": category_metrics(truth, model_only, labels),
            "urgency": urgency_metrics(true_urgency, [p.urgency for p in predictions],
                                       alert_threshold),
            "tickets_per_second": round(len(tickets) / seconds, 1),
        },
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


def render_report(report: dict) -> str:
    t, b, rule = report["transformer"], report["baseline"], report["billing_rule"]
    lines = [
        f"{report['data']['path']}: {report['data']['tickets']} tickets, "
        f"model {report['model']['version']}",
        f"{'':28}{'transformer':>12}{'baseline':>10}",
        f"{'macro-F1 (with rule)':28}{t['macro_f1']:>12.4f}{b['macro_f1']:>10.4f}",
        f"{'macro-F1 (model only)':28}{t['model_only']['macro_f1']:>12.4f}",
        f"{'accuracy':28}{t['accuracy']:>12.4f}{b['accuracy']:>10.4f}",
        f"{'urgency Spearman':28}{t['urgency']['spearman']:>12.4f}{b['urgency']['spearman']:>10.4f}",
        f"{'urgency MAE':28}{t['urgency']['mae']:>12.4f}{b['urgency']['mae']:>10.4f}",
    ]
    for name, m in (("transformer", t), ("baseline", b)):
        alerts = m["urgency"]["alerts"]
        lines.append(f"alerts > {alerts['threshold']} ({name}): raised {alerts['raised']}, "
                     f"deserved {alerts['deserved']}, precision {alerts['precision']}, "
                     f"recall {alerts['recall']}")
    lines.append("per category (transformer, with rule): precision / recall / F1 / support")
    for label, m in t["per_category"].items():
        lines.append(f"  {label:24} {m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f} / "
                     f"{m['support']}")
    cm = t["confusion_matrix"]
    lines.append("confusion (rows true, columns predicted): " + " ".join(cm["labels"]))
    for label, row in zip(cm["labels"], cm["rows_true_columns_predicted"]):
        lines.append(f"  {label:24} {row}")
    g, u = rule["guarded"], rule["unguarded_for_comparison"]
    lines.append(f"billing rule (fires below confidence {g['max_confidence']}): changed "
                 f"{g['changed']}, to correct {g['changed_to_correct']}, from correct "
                 f"{g['changed_from_correct']}")
    lines.append(f"same rule unguarded: macro-F1 {u['macro_f1']}, changed {u['changed']}, "
                 f"to correct {u['changed_to_correct']}, from correct {u['changed_from_correct']}")
    return "\n".join(lines)
