"""How live traffic has moved away from the training data, by day (`smart-support drift`).

References come from the model's metadata: the training file's category mix, the validation
split's confidence histogram and needs-review share. Distances are total variation distances
(half the L1 distance between two distributions): 0 = same mix, 1 = nothing in common.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from smart_support.training.metrics import confidence_histogram


def total_variation(p: dict, q: dict) -> float:
    keys = set(p) | set(q)
    return round(0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys), 4)


def _summary(rows: list[dict], reference: dict) -> dict:
    counts = Counter(r["category"] for r in rows)
    share = {k: round(v / len(rows), 4) for k, v in sorted(counts.items())}
    confidence = np.array([r["confidence"] for r in rows])
    histogram = confidence_histogram(confidence)
    summary = {
        "tickets": len(rows),
        "category_share": share,
        "category_distance": total_variation(share, reference["category_share"]),
        "mean_confidence": round(float(confidence.mean()), 4),
        "confidence_histogram": histogram,
        "confidence_distance": (total_variation(histogram, reference["confidence_histogram"])
                                if reference["confidence_histogram"] else None),
        "review_share": round(float(np.mean([bool(r["needs_review"]) for r in rows])), 4),
        "degraded_share": round(float(np.mean([r["model"] == "baseline" for r in rows])), 4),
    }
    return summary


def drift_report(rows: list[dict], metadata: dict, days: int) -> dict:
    per_category = metadata.get("training_data", {}).get("per_category", {})
    total = sum(per_category.values()) or 1
    reference = {
        "category_share": {k: round(v / total, 4) for k, v in sorted(per_category.items())},
        "confidence_histogram": metadata.get("calibration", {}).get(
            "validation_confidence_histogram"),
        "review_share": metadata.get("review", {}).get("review_share"),
    }
    report = {"model_version": metadata.get("version"), "window_days": days,
              "tickets": len(rows), "reference": reference, "days": []}
    if not rows:
        return report
    by_day = defaultdict(list)
    for row in rows:
        by_day[row["created_at"].strftime("%Y-%m-%d")].append(row)
    report["overall"] = _summary(rows, reference)
    report["days"] = [{"day": day, **_summary(by_day[day], reference)} for day in sorted(by_day)]
    return report


def render_drift(report: dict) -> str:
    if not report["tickets"]:
        return (f"no predictions logged in the last {report['window_days']} days "
                "(SMART_SUPPORT_RECORD_PREDICTIONS, SMART_SUPPORT_DATA_DIR)")
    ref = report["reference"]
    lines = [f"{report['tickets']} predictions in the last {report['window_days']} days; "
             f"model {report['model_version']}",
             f"training category mix: {ref['category_share']}; validation needs-review share: "
             f"{ref['review_share']}",
             f"{'day':12}{'tickets':>8}{'cat. dist':>10}{'conf. dist':>11}{'mean conf':>10}"
             f"{'review':>8}{'degraded':>9}  category mix"]
    for day in report["days"] + [{"day": "all", **report["overall"]}]:
        conf = "-" if day["confidence_distance"] is None else f"{day['confidence_distance']:.3f}"
        lines.append(f"{day['day']:12}{day['tickets']:>8}{day['category_distance']:>10.3f}"
                     f"{conf:>11}{day['mean_confidence']:>10.3f}{day['review_share']:>8.1%}"
                     f"{day['degraded_share']:>9.1%}  {day['category_share']}")
    return "\n".join(lines)


def drift_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [d["day"] for d in report["days"]]
    figure, (mix, scores) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    categories = sorted({c for d in report["days"] for c in d["category_share"]}
                        | set(report["reference"]["category_share"]))
    for category in categories:
        line, = mix.plot(days, [d["category_share"].get(category, 0) for d in report["days"]],
                         marker="o", label=category)
        reference = report["reference"]["category_share"].get(category)
        if reference is not None:
            mix.axhline(reference, color=line.get_color(), linestyle=":", linewidth=1)
    mix.set_ylabel("share of tickets")
    mix.set_title("category mix by day (dotted: training data)")
    mix.legend(fontsize=8)
    for key, label in (("category_distance", "category distance"),
                       ("confidence_distance", "confidence distance"),
                       ("review_share", "needs review"), ("mean_confidence", "mean confidence")):
        values = [d[key] for d in report["days"]]
        if all(v is not None for v in values):
            scores.plot(days, values, marker="o", label=label)
    scores.set_ylim(0, 1.05)
    scores.set_ylabel("value")
    scores.legend(fontsize=8)
    scores.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
