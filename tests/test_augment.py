"""Perturbed training copies for distillation (smart_support.training.augment)."""
from __future__ import annotations

import numpy as np

from smart_support.training.augment import augmented, perturbed

TICKET = ("Card declined at checkout\nI tried to pay the March invoice three times. "
          "Each time the card is declined. The bank says nothing reached them! "
          "Can you check your payment page?")


def test_a_perturbed_copy_keeps_the_subject_and_at_least_half_of_the_words():
    rng = np.random.default_rng(0)
    for _ in range(50):
        copy = perturbed(TICKET, rng)
        subject, _, description = copy.partition("\n")
        assert subject == "Card declined at checkout"
        original_words = TICKET.partition("\n")[2].split()
        assert len(original_words) / 2 <= len(description.split()) <= len(original_words)
        assert set(description.split()) <= set(original_words)


def test_copies_differ_from_the_original_and_from_each_other():
    copies = [text for _, text in augmented([TICKET], copies=5, seed=1)]
    assert TICKET not in copies
    assert len(set(copies)) == 5


def test_augmentation_is_reproducible_for_a_seed_and_names_each_copy_s_original():
    texts = [TICKET, "Refund please\nI was charged twice."]
    first, again = augmented(texts, copies=2, seed=7), augmented(texts, copies=2, seed=7)
    assert first == again
    assert [index for index, _ in first] == [0, 1, 0, 1]
    assert augmented(texts, copies=2, seed=8) != first


def test_a_text_without_a_description_is_perturbed_as_a_whole():
    copy = perturbed("printer on fire again and again and again", np.random.default_rng(3))
    assert "\n" not in copy and 4 <= len(copy.split()) <= 8
