"""The TF-IDF baseline (the challenge's milestone-1 model), trained on the same split as the
transformer so every report shows what the transformer adds."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline, make_union


def _features():
    return make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True),
    )


def fit_baseline(texts: Sequence[str], categories: Sequence[str], urgency: Sequence[float],
                 seed: int) -> dict:
    classifier = make_pipeline(_features(), LogisticRegression(C=10.0, max_iter=2000,
                                                               random_state=seed))
    classifier.fit(list(texts), list(categories))
    regressor = make_pipeline(_features(), RidgeCV(alphas=np.logspace(-2, 2, 9)))
    regressor.fit(list(texts), np.asarray(urgency, dtype=float))
    return {"classifier": classifier, "urgency": regressor}

