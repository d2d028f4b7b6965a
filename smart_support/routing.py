"""Routing rules applied on top of the model: pure functions, no Flask and no torch.

The seed routed every ticket that mentions a billing word to Billing. Measured on realistic
tickets, about one Technical or Legal ticket in six mentions such a word ("the invoice PDF export
throws a 500"), so an unconditional rule overturns many correct answers. The rule here only
breaks the model's doubt: it fires when a billing phrase matches *and* the model is not already
confident in a different category.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

RULE_NAME = "billing_keywords"


@dataclass(frozen=True)
class OverrideRule:
    """The billing-keyword rule's configuration."""

    phrases: tuple[str, ...]
    target_category: str = "Billing"
    max_confidence: float = 0.80
    enabled: bool = True


@dataclass(frozen=True)
class RoutingDecision:
    category: str
    model_category: str
    confidence: float
    override: dict | None


@lru_cache(maxsize=32)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    """One case-insensitive regex matching any phrase as whole words ("card", not "discard")."""
    alternatives = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, p.split())) for p in alternatives)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def matched_phrases(text: str, phrases: tuple[str, ...]) -> list[str]:
    """The distinct phrases found in `text`, lower-cased, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in phrase_pattern(phrases).finditer(text):
        seen.setdefault(" ".join(match.group(0).lower().split()), None)
    return list(seen)


def route(text: str, scores: Mapping[str, float], rule: OverrideRule) -> RoutingDecision:
    """Pick the final category from the model's per-category probabilities and the rule."""
    model_category = max(scores, key=scores.get)
    confidence = float(scores[model_category])
    unchanged = RoutingDecision(model_category, model_category, confidence, None)
    if (not rule.enabled or rule.target_category not in scores
            or model_category == rule.target_category or confidence >= rule.max_confidence):
        return unchanged
    matches = matched_phrases(text, rule.phrases)
    if not matches:
        return unchanged
    override = {
        "rule": RULE_NAME,
        "matched": matches,
        "from_category": model_category,
        "model_confidence": round(confidence, 4),
    }
    return RoutingDecision(rule.target_category, model_category,
                           float(scores[rule.target_category]), override)


def route_many(texts: Sequence[str], score_rows: Sequence[Mapping[str, float]],
               rule: OverrideRule) -> list[RoutingDecision]:
    return [route(t, s, rule) for t, s in zip(texts, score_rows)]


def recommended_max_confidence(sweep: Mapping[str, float]) -> float:
    """The highest confidence ceiling (at most 1) whose validation macro-F1 is the best of
    the sweep: the rule may fire as often as it can without costing accuracy."""
    scores = {float(k): v for k, v in sweep.items() if float(k) <= 1.0}
    best = max(scores.values())
    return max(c for c, f1 in scores.items() if f1 >= best - 1e-9)
