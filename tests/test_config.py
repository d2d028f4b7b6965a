"""Settings come from SMART_SUPPORT_* variables and are validated at start-up."""
from pathlib import Path

import pytest

from smart_support.config import ConfigError, Settings


def test_defaults_apply_when_nothing_is_set():
    settings = Settings.from_env({})
    assert settings.model_dir == Path("models")
    assert settings.max_batch_size == 256
    assert "refund" in settings.billing_phrases


def test_variables_are_parsed_by_type():
    settings = Settings.from_env({
        "SMART_SUPPORT_MODEL_DIR": "/srv/models",
        "SMART_SUPPORT_MAX_BATCH_SIZE": "64",
        "SMART_SUPPORT_OVERRIDE_MAX_CONFIDENCE": "0.5",
        "SMART_SUPPORT_OVERRIDE_ENABLED": "off",
        "SMART_SUPPORT_BILLING_PHRASES": "refund, money back ,",
    })
    assert settings.model_dir == Path("/srv/models")
    assert settings.max_batch_size == 64
    assert settings.override_max_confidence == 0.5
    assert settings.override_enabled is False
    assert settings.billing_phrases == ("refund", "money back")


@pytest.mark.parametrize("name, value", [
    ("SMART_SUPPORT_MAX_BATCH_SIZE", "many"),
    ("SMART_SUPPORT_MAX_BATCH_SIZE", "0"),
    ("SMART_SUPPORT_OVERRIDE_MAX_CONFIDENCE", "1.5"),
    ("SMART_SUPPORT_OVERRIDE_ENABLED", "maybe"),
    ("SMART_SUPPORT_BILLING_PHRASES", " , "),
    ("SMART_SUPPORT_MAX_TOKENS", "4096"),
    ("SMART_SUPPORT_LOG_LEVEL", "LOUD"),
    ("SMART_SUPPORT_PREDICTION_LOG_FLUSH_SECONDS", "-1"),
    ("SMART_SUPPORT_PREDICTION_LOG_FLUSH_SECONDS", "60"),
    ("SMART_SUPPORT_PREDICTION_LOG_FLUSH_SECONDS", "soon"),
])
def test_invalid_values_are_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_rule_ceiling_comes_from_the_setting_else_the_model_else_a_default():
    from smart_support.config import override_rule

    metadata = {"validation": {"billing_rule_by_max_confidence": {"0.5": 0.9, "0.6": 0.9,
                                                                  "0.7": 0.8}}}
    assert override_rule(Settings.from_env({}), metadata).max_confidence == 0.6
    assert override_rule(Settings.from_env({}), {}).max_confidence == 0.7
    configured = Settings.from_env({"SMART_SUPPORT_OVERRIDE_MAX_CONFIDENCE": "0.4"})
    assert override_rule(configured, metadata).max_confidence == 0.4
