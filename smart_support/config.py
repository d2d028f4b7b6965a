"""Settings from SMART_SUPPORT_* environment variables, validated once at start-up.

Every setting has a documented default (README, "Configuration"). Invalid values stop the
process with a message naming the variable, instead of surfacing later as odd behaviour.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PREFIX = "SMART_SUPPORT_"

DEFAULT_BILLING_PHRASES = (
    "refund", "refunds", "refunded", "money back", "charge", "charges", "charged",
    "double charged", "overcharged", "invoice", "invoices", "invoiced", "payment",
    "payments", "paid", "billing", "billed", "bill", "credit card", "debit card", "card",
    "price", "pricing", "subscription", "receipt", "vat", "chargeback", "renewal fee",
)


DEFAULT_OVERRIDE_MAX_CONFIDENCE = 0.7


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path("models")
    max_subject_chars: int = 1_000
    max_description_chars: int = 20_000
    max_batch_size: int = 256
    max_body_bytes: int = 8 * 1024 * 1024
    max_tokens: int = 256
    inference_batch_size: int = 32
    micro_batching: bool = False
    torch_threads: int = 1
    quantize: str = "int8"
    runtime: str = "onnx"
    ensemble: bool = False
    override_enabled: bool = True
    override_category: str = "Billing"
    override_max_confidence: float | None = None
    billing_phrases: tuple[str, ...] = field(default=DEFAULT_BILLING_PHRASES)
    breaker_failure_threshold: int = 3
    breaker_latency_budget_seconds: float = 0.5
    breaker_reset_seconds: float = 30.0
    api_keys: tuple[str, ...] = ()
    open_routes: tuple[str, ...] = ("/health", "/ready", "/metrics", "/docs", "/openapi.json")
    review_threshold: float | None = None
    data_dir: Path = Path("var")
    database_url: str = ""
    record_predictions: bool = True
    prediction_log_flush_seconds: float = 0.05
    max_feedback_note_chars: int = 2_000
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = ""
    alert_threshold: float = 0.8
    alert_max_attempts: int = 8
    alert_backoff_seconds: float = 1.0
    alert_backoff_cap_seconds: float = 300.0
    alert_timeout_seconds: float = 5.0
    alert_lease_seconds: float = 60.0
    alert_outbox_max: int = 10_000
    alert_dispatcher: bool = True
    auto_assign: bool = True
    assignment_skill_margin: float = 0.05
    max_agent_capacity: int = 1_000
    max_page_size: int = 500
    max_resolution_chars: int = 2_000
    storm_enabled: bool = True
    storm_encoder: str = ""
    storm_similarity: float = 0.40
    storm_min_lift: float = 5.0
    storm_copy_similarity: float = 0.65
    storm_join_similarity: float = 0.55
    storm_count: int = 10
    storm_window_seconds: float = 300.0
    storm_history_seconds: float = 86_400.0
    storm_min_history: int = 100
    storm_window_max: int = 20_000
    incident_quiet_seconds: float = 3_600.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "Settings":
        """Build settings from SMART_SUPPORT_* variables; `overrides` (tests) win over both."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name in environ:
                values[f.name] = _convert(name, f.name, environ[name], getattr(cls, f.name, None))
        values.update(overrides)
        return replace(cls(), **values).validated()

    def validated(self) -> "Settings":
        positive = ("max_subject_chars", "max_description_chars", "max_batch_size",
                    "max_body_bytes", "max_tokens", "inference_batch_size", "torch_threads",
                    "breaker_failure_threshold", "alert_max_attempts", "alert_outbox_max",
                    "max_agent_capacity", "max_page_size", "max_resolution_chars",
                    "storm_count", "storm_window_max")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if not 16 <= self.max_tokens <= 512:
            raise ConfigError(f"{PREFIX}MAX_TOKENS must be between 16 and 512")
        if self.override_max_confidence is not None \
                and not 0.0 <= self.override_max_confidence <= 1.0:
            raise ConfigError(f"{PREFIX}OVERRIDE_MAX_CONFIDENCE must be in [0, 1]")
        if not 0.0 <= self.alert_threshold <= 1.0:
            raise ConfigError(f"{PREFIX}ALERT_THRESHOLD must be in [0, 1]")
        if min(self.alert_backoff_seconds, self.alert_timeout_seconds) <= 0 \
                or self.alert_lease_seconds <= self.alert_timeout_seconds:
            raise ConfigError(f"{PREFIX}ALERT_* times must be > 0, and the lease longer than "
                              "the timeout")
        from smart_support.alerts.payload import parse_target

        for target in self.webhook_urls:
            url = parse_target(target)[1]
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{PREFIX}WEBHOOK_URLS: {url!r} is not an http(s) URL")
        if not self.billing_phrases:
            raise ConfigError(f"{PREFIX}BILLING_PHRASES must name at least one phrase")
        if self.breaker_latency_budget_seconds <= 0 or self.breaker_reset_seconds < 0:
            raise ConfigError(f"{PREFIX}BREAKER_LATENCY_BUDGET_SECONDS must be > 0 and "
                              f"{PREFIX}BREAKER_RESET_SECONDS >= 0")
        if any(len(key) < 16 for key in self.api_keys):
            raise ConfigError(f"{PREFIX}API_KEYS: each key must have at least 16 characters")
        if self.review_threshold is not None and not 0.0 <= self.review_threshold <= 1.0:
            raise ConfigError(f"{PREFIX}REVIEW_THRESHOLD must be in [0, 1]")
        if not 0.0 <= self.prediction_log_flush_seconds <= 10.0:
            raise ConfigError(f"{PREFIX}PREDICTION_LOG_FLUSH_SECONDS must be in [0, 10]")
        if self.quantize not in {"none", "int8"}:
            raise ConfigError(f"{PREFIX}QUANTIZE must be none or int8")
        if self.runtime not in {"onnx", "torch"}:
            raise ConfigError(f"{PREFIX}RUNTIME must be onnx or torch")
        for name in ("storm_similarity", "storm_copy_similarity", "storm_join_similarity"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be a cosine in [-1, 1]")
        if min(self.storm_window_seconds, self.incident_quiet_seconds) <= 0 \
                or self.storm_history_seconds < self.storm_window_seconds:
            raise ConfigError(f"{PREFIX}STORM_WINDOW_SECONDS and {PREFIX}INCIDENT_QUIET_SECONDS "
                              f"must be > 0, and {PREFIX}STORM_HISTORY_SECONDS at least the "
                              "window")
        if self.storm_min_lift < 1.0 or self.storm_min_history < 0:
            raise ConfigError(f"{PREFIX}STORM_MIN_LIFT must be >= 1 and "
                              f"{PREFIX}STORM_MIN_HISTORY >= 0")
        if not 0.0 <= self.assignment_skill_margin <= 1.0:
            raise ConfigError(f"{PREFIX}ASSIGNMENT_SKILL_MARGIN must be in [0, 1]")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return self


def _convert(env_name: str, attr: str, raw: str, default):
    try:
        if attr in {"review_threshold", "override_max_confidence"}:
            return float(raw)
        if isinstance(default, tuple):
            return _parse_list(raw)
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ConfigError("must be true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
        return raw
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{env_name}={raw!r}: {exc}") from None


def override_rule(settings: Settings, metadata: dict | None = None):
    """The billing-keyword rule as configured; its confidence ceiling is the setting, else the
    one the model's validation sweep recommends, else 0.7."""
    from smart_support.routing import OverrideRule, recommended_max_confidence

    ceiling = settings.override_max_confidence
    if ceiling is None:
        sweep = ((metadata or {}).get("validation") or {}).get("billing_rule_by_max_confidence")
        ceiling = recommended_max_confidence(sweep) if sweep else DEFAULT_OVERRIDE_MAX_CONFIDENCE
    return OverrideRule(phrases=settings.billing_phrases,
                        target_category=settings.override_category,
                        max_confidence=ceiling,
                        enabled=settings.override_enabled)
