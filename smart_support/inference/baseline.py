"""Predictions from the shipped TF-IDF baseline (see training/baseline.py for how it is fitted)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def predict_baseline(baseline: dict, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    categories = [str(c) for c in baseline["classifier"].predict(list(texts))]
    urgency = np.clip(baseline["urgency"].predict(list(texts)), 0.0, 1.0)
    return categories, urgency
