"""The billing-keyword rule is a pure function: no app, no model."""
from smart_support.config import DEFAULT_BILLING_PHRASES
from smart_support.routing import OverrideRule, matched_phrases, route

RULE = OverrideRule(phrases=DEFAULT_BILLING_PHRASES, target_category="Billing", max_confidence=0.8)


def scores(billing, legal, technical):
    return {"Billing": billing, "Legal": legal, "Technical": technical}


def test_phrases_match_on_word_boundaries_only():
    assert matched_phrases("please discard the old file", ("card",)) == []
    assert matched_phrases("my card was declined", ("card",)) == ["card"]
    assert matched_phrases("Scorecard export fails", ("card",)) == []
    assert matched_phrases("card-holder name", ("card",)) == ["card"]


def test_multi_word_phrases_match_across_any_whitespace_and_case():
    assert matched_phrases("I want my MONEY\n  back now", ("money back",)) == ["money back"]


def test_longer_phrase_wins_over_its_prefix():
    assert matched_phrases("credit card expired", ("card", "credit card")) == ["credit card"]


def test_matches_are_distinct_and_in_order_of_appearance():
    text = "Refund the charge. REFUND it! Also the invoice."
    assert matched_phrases(text, ("invoice", "refund", "charge")) == ["refund", "charge", "invoice"]


def test_rule_fires_when_model_is_unsure_and_a_phrase_matches():
    decision = route("refund my last payment", scores(0.35, 0.05, 0.60), RULE)
    assert decision.category == "Billing"
    assert decision.model_category == "Technical"
    assert decision.confidence == 0.35
    assert decision.override == {"rule": "billing_keywords", "matched": ["refund", "payment"],
                                 "from_category": "Technical", "model_confidence": 0.6}


def test_rule_does_not_overturn_a_confident_prediction():
    decision = route("the invoice PDF export throws a 500", scores(0.05, 0.01, 0.94), RULE)
    assert decision.category == "Technical"
    assert decision.override is None


def test_rule_stays_quiet_without_a_billing_phrase():
    decision = route("the export throws a 500", scores(0.30, 0.10, 0.60), RULE)
    assert (decision.category, decision.override) == ("Technical", None)


def test_rule_does_nothing_when_the_model_already_says_billing():
    decision = route("refund please", scores(0.5, 0.2, 0.3), RULE)
    assert (decision.category, decision.override) == ("Billing", None)


def test_confidence_ceiling_of_one_makes_the_rule_fire_on_any_match():
    always = OverrideRule(DEFAULT_BILLING_PHRASES, "Billing", max_confidence=1.01)
    decision = route("our lawyer says the clause is void, refund us", scores(0.01, 0.98, 0.01),
                     always)
    assert decision.category == "Billing"


def test_disabled_rule_or_unknown_target_category_never_fires():
    disabled = OverrideRule(DEFAULT_BILLING_PHRASES, "Billing", 0.8, enabled=False)
    assert route("refund", scores(0.3, 0.3, 0.4), disabled).override is None
    other_labels = {"Sales": 0.4, "Support": 0.6}
    assert route("refund", other_labels, RULE).category == "Support"


def test_the_recommended_ceiling_is_the_highest_that_costs_nothing_on_validation():
    from smart_support.routing import recommended_max_confidence

    sweep = {"0.0": 0.93, "0.5": 0.93, "0.6": 0.93, "0.7": 0.92, "1.01": 0.67}
    assert recommended_max_confidence(sweep) == 0.6
    assert recommended_max_confidence({"0.0": 0.9, "0.8": 0.95, "1.01": 0.99}) == 0.8
