"""The TF-IDF baseline answers one text at a time exactly as scikit-learn's models do."""
import numpy as np

from conftest import CATEGORY_WORDS, make_tickets
from smart_support.inference import baseline as baseline_module
from smart_support.inference.baseline import BaselinePredictor, LinearTfidf
from smart_support.inference.predictor import ticket_text
from smart_support.training.baseline import fit_baseline

TEXTS = [
    "", "   \n\t ", "refund refund refund", "Login ERROR since today: the api returns 500",
    "GDPR  contract\n\nclause; our lawyer asks", "Überweisung doppelt abgebucht — refund?",
    "nothing here is in the vocabulary: zzqx vvkj", "invoice " * 3000,
]


def fitted(categories=CATEGORY_WORDS) -> dict:
    rows = make_tickets(20, seed=3, categories=categories)
    return fit_baseline([ticket_text(r["subject"], r["description"]) for r in rows],
                        [r["category"] for r in rows], [r["urgency"] for r in rows], seed=13)


def scikit_learn(models: dict, texts) -> tuple[np.ndarray, np.ndarray]:
    matrix = models["features"].transform(list(texts))
    return (models["classifier"].predict_proba(matrix),
            np.clip(models["urgency"].predict(matrix), 0.0, 1.0))


def test_the_per_text_path_answers_as_scikit_learn_does():
    models = fitted()
    predictor = BaselinePredictor(models)
    assert predictor.per_text is not None
    texts = TEXTS + [ticket_text(r["subject"], r["description"]) for r in make_tickets(5, seed=9)]
    probs, urgency = predictor.predict_texts(texts)
    expected_probs, expected_urgency = scikit_learn(models, texts)
    assert probs.shape == expected_probs.shape == (len(texts), 3)
    np.testing.assert_allclose(probs, expected_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(urgency, expected_urgency, rtol=0, atol=1e-12)


def test_no_texts_get_no_answers_on_either_path():
    predictor = BaselinePredictor(fitted())
    for per_text in (predictor.per_text, None):
        predictor.per_text = per_text
        probs, urgency = predictor.predict_texts([])
        assert probs.shape == (0, 3) and urgency.shape == (0,)


def test_a_two_category_baseline_is_answered_by_scikit_learn():
    # a binary logistic regression has one row of weights and a sigmoid, not a softmax
    models = fitted({k: v for k, v in CATEGORY_WORDS.items() if k != "Legal"})
    predictor = BaselinePredictor(models)
    assert predictor.per_text is None
    probs, urgency = predictor.predict_texts(TEXTS)
    expected_probs, expected_urgency = scikit_learn(models, TEXTS)
    np.testing.assert_array_equal(probs, expected_probs)
    np.testing.assert_array_equal(urgency, expected_urgency)


def test_a_per_text_path_that_disagrees_with_scikit_learn_is_not_used(monkeypatch, caplog):
    exact = LinearTfidf.raw_scores
    monkeypatch.setattr(LinearTfidf, "raw_scores",
                        lambda self, text: exact(self, text) + 1e-6)
    models = fitted()
    with caplog.at_level("WARNING", logger=baseline_module.__name__):
        predictor = BaselinePredictor(models)
    assert predictor.per_text is None
    assert "disagrees with scikit-learn" in caplog.text
    probs, _ = predictor.predict_texts(TEXTS)
    np.testing.assert_array_equal(probs, scikit_learn(models, TEXTS)[0])


def test_a_weighted_feature_union_is_answered_by_scikit_learn():
    models = fitted()
    models["features"].transformer_weights = {"tfidfvectorizer-1": 2.0}
    assert BaselinePredictor(models).per_text is None
