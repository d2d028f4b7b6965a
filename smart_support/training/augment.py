"""Perturbed copies of training tickets, for distilling a small student.

A distilled student learns the teacher's whole output distribution, not only the labels; it
learns it better from more text than the 1,500 training tickets. Copies with some words dropped
and the description's sentences reordered keep a ticket's meaning (the teacher labels each copy
itself when distilling), in the spirit of TinyBERT's task-specific augmentation, without a
second model to generate text. Only training tickets are copied, never validation ones.
"""
from __future__ import annotations

import re

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def perturbed(text: str, rng: np.random.Generator, drop: float = 0.15) -> str:
    """`text` with each word dropped with probability `drop` (at least half kept) and, half
    of the time, the description's sentences shuffled; the first line (the subject) stays.
    A text of one line (a ticket without a subject, see `ticket_text`) is all description."""
    subject, newline, description = text.partition("\n")
    if not newline:
        subject, description = "", text
    sentences = [s for s in SENTENCE_END.split(description) if s.strip()]
    if len(sentences) > 2 and rng.random() < 0.5:
        sentences = [sentences[i] for i in rng.permutation(len(sentences))]
    words = " ".join(sentences).split()
    kept = [w for w in words if rng.random() >= drop]
    if len(kept) < len(words) / 2:
        kept = words
    return f"{subject}\n{' '.join(kept)}" if newline else " ".join(kept)


def augmented(texts: list[str], copies: int, seed: int) -> list[tuple[int, str]]:
    """(index of the original, perturbed text) for `copies` copies of every text, in a fixed
    order for a fixed seed."""
    rng = np.random.default_rng(seed)
    return [(i, perturbed(text, rng)) for _ in range(copies) for i, text in enumerate(texts)]
