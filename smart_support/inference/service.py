"""The triage service: loaded artifacts, the predictor and the routing rule, held once per process.

It never raises at start-up for bad artifacts: it records why it is not ready (naming the file),
so the web layer can stay alive, answer /health, and report the reason on /ready.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from smart_support.config import Settings, override_rule
from smart_support.inference.artifacts import (
    ArtifactError, fitted_metadata, load_artifacts, load_ensemble,
)
from smart_support.inference.baseline import BaselinePredictor
from smart_support.inference.breaker import OPEN, CircuitBreaker
from smart_support.inference.predictor import Predictor, Ticket, blend_of, ticket_text
from smart_support.routing import route_many

log = logging.getLogger(__name__)


class NotReady(Exception):
    """The model is not loaded; `reason` says why and `path` names the file at fault."""

    def __init__(self, reason: str, path: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = path


@dataclass
class TriageResult:
    category: str
    model_category: str
    confidence: float
    scores: dict[str, float]
    urgency_score: float
    override: dict | None
    model: str
    degraded: bool
    needs_review: bool


def _relative_to(path: str, model_dir: Path) -> str:
    """`path` as clients may see it: relative to the model directory, or just its name."""
    target, root = Path(path).resolve(), Path(model_dir).resolve()
    if target == root:
        return root.name
    return str(target.relative_to(root)) if target.is_relative_to(root) else target.name


class TriageService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.rule = override_rule(settings)  # refined from the model's metadata at load
        self.artifacts = None
        self.predictor: Predictor | None = None
        self.fallback: BaselinePredictor | None = None
        self.fitted: dict = {}  # the metadata that thresholds and the rule are read from
        self.answered_by = "transformer"  # or "ensemble" (SMART_SUPPORT_ENSEMBLE)
        self.batcher = None  # a MicroBatcher when SMART_SUPPORT_MICRO_BATCHING is on
        self.not_ready: NotReady | None = NotReady("model not loaded yet")
        self.breaker = CircuitBreaker(settings.breaker_failure_threshold,
                                      settings.breaker_latency_budget_seconds,
                                      settings.breaker_reset_seconds,
                                      on_transition=self._breaker_moved)

    def load(self) -> None:
        """Load and verify artifacts once; on failure keep the reason instead of raising."""
        started = time.perf_counter()
        try:
            artifacts = load_artifacts(self.settings.model_dir, self.settings.runtime)
            ensemble = (load_ensemble(artifacts.model_dir, artifacts.metadata)
                        if self.settings.ensemble else None)
            fallback = BaselinePredictor(artifacts.baseline)
            predictor = Predictor(artifacts, self.settings.max_tokens,
                                  self.settings.inference_batch_size, self.settings.quantize,
                                  self.settings.torch_threads, blend_of(ensemble, fallback))
            predictor.warm_up()
        except ArtifactError as exc:
            # Clients see the file relative to the model directory, never the server's paths.
            shown = _relative_to(exc.path, self.settings.model_dir)
            self.not_ready = NotReady(f"{shown}: {exc.reason}", shown)
            log.error("model not ready: %s", exc)
            return
        if self.rule.enabled and self.rule.target_category not in artifacts.labels:
            log.warning("override category %r is not among the model's labels %s; "
                        "the billing rule is off", self.rule.target_category, artifacts.labels)
        self.fitted = fitted_metadata(artifacts.metadata, ensemble)
        self.rule = override_rule(self.settings, self.fitted)
        self.artifacts, self.predictor, self.fallback = artifacts, predictor, fallback
        self.answered_by = "ensemble" if ensemble else "transformer"
        if self.settings.micro_batching:
            from smart_support.inference.batcher import MicroBatcher
            from smart_support.metrics import MICRO_BATCH

            self.batcher = MicroBatcher(self._predict_watched, self.settings.inference_batch_size,
                                        on_batch=MICRO_BATCH.observe)
        self.not_ready = None
        log.info("model %s loaded from %s in %.2f s (%s runtime, %s%s)", artifacts.version,
                 artifacts.model_dir, time.perf_counter() - started, self.settings.runtime,
                 self.settings.quantize,
                 f", blended with the baseline at {ensemble['baseline_weight']}" if ensemble
                 else "")

    def refuse(self, reason: str, path: str | None = None) -> None:
        """Another artifact the service depends on is missing or broken: not ready."""
        self.not_ready = NotReady(reason, path)
        log.error("not ready: %s", reason)

    @property
    def ready(self) -> bool:
        return self.not_ready is None

    @property
    def model_version(self) -> str | None:
        return self.artifacts.version if self.artifacts else None

    @property
    def review_threshold(self) -> float:
        """Below this confidence a ticket needs a person: the setting, else the threshold the
        training run (or the ensemble's fit) chose on validation data, else 0 (never)."""
        if self.settings.review_threshold is not None:
            return self.settings.review_threshold
        review = self.fitted.get("review") or {}
        return float(review.get("threshold", 0.0))

    @property
    def degraded(self) -> bool:
        return self.breaker.state == OPEN

    def triage(self, tickets: Sequence[Ticket]) -> tuple[list[TriageResult], dict[str, float]]:
        """Predict (transformer, or the baseline while the breaker is open), then route.
        Returns results in input order and seconds per stage."""
        if self.not_ready:
            raise self.not_ready
        predictions, timings, model = (self.batcher.submit(tickets) if self.batcher
                                       else self._predict_watched(tickets))
        degraded = model == "baseline"
        started = time.perf_counter()
        texts = [ticket_text(t.subject, t.description) for t in tickets]
        decisions = route_many(texts, [p.scores for p in predictions], self.rule)
        timings["routing"] = time.perf_counter() - started
        threshold = self.review_threshold
        results = [
            TriageResult(d.category, d.model_category, d.confidence, p.scores, p.urgency,
                         d.override, model, degraded, d.confidence < threshold)
            for p, d in zip(predictions, decisions)
        ]
        return results, timings

    def explain(self, ticket: Ticket, result: TriageResult) -> dict:
        """Why `result`: the words that pushed the model's category most, and the rule."""
        words = (self.predictor.explain(ticket, result.model_category)
                 if result.model != "baseline" else [])
        return {"method": "occlusion" if result.model != "baseline" else "unavailable",
                "model_category": result.model_category, "words": words,
                "rule": result.override}

    def _predict_watched(self, tickets):
        if self.breaker.allow():
            started = time.perf_counter()
            units = -(-len(tickets) // self.settings.inference_batch_size)
            try:
                predictions, timings = self.predictor.predict(tickets)
            except Exception as exc:  # any model failure must fall back, never reach the client
                self.breaker.record(time.perf_counter() - started, exc, units)
                log.exception("transformer failed; answering with the baseline")
            else:
                self.breaker.record(time.perf_counter() - started, None, units)
                return predictions, timings, self.answered_by
        predictions, timings = self.fallback.predict(tickets)
        return predictions, timings, "baseline"

    @staticmethod
    def _breaker_moved(old: str, new: str, reason: str) -> None:
        from smart_support import metrics

        metrics.BREAKER_TRANSITIONS.labels(new).inc()
        metrics.BREAKER_OPEN.set(1 if new != "closed" else 0)
        log.warning("circuit breaker %s -> %s (%s)", old, new, reason,
                    extra={"breaker_from": old, "breaker_to": new, "reason": reason})
