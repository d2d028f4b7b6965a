"""The TF-IDF baseline (the challenge's milestone-1 model), trained on the same split as the
transformer so every report shows what the transformer adds. The classifier and the urgency
regressor share one fitted vocabulary, which halves the baseline's memory in every worker."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_union


def fit_baseline(texts: Sequence[str], categories: Sequence[str], urgency: Sequence[float],
                 seed: int) -> dict:
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True),
    )
    matrix = features.fit_transform(list(texts))
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(matrix, list(categories))
    regressor = RidgeCV(alphas=np.logspace(-2, 2, 9)).fit(matrix, np.asarray(urgency, dtype=float))
    return {"features": features, "classifier": classifier, "urgency": regressor}
