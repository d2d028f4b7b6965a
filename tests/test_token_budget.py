"""The token budget: long texts keep their head and tail, and a long text is tokenized only in
two windows when that provably gives the ids of tokenizing all of it."""
import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from smart_support.inference.embedder import packaged_encoder_path
from smart_support.inference.predictor import TokenBudget

PIECES = ["refund", "the", "invoice", "login", "error", "é", "à", "İ", "ß", "中文", ".", ",", "!",
          " ", "  ", "\n", "\t", "\r\n", "\x1c", "\u00a0", "\u0301", "https://x.y/z?q=1",
          "a" * 120]


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.choice([5, 400, 3000, 9000])))
            for _ in range(count)]


@pytest.fixture(scope="module")
def minilm_budget():
    return TokenBudget(Tokenizer.from_file(str(packaged_encoder_path() / "tokenizer.json")), 256)


def test_a_long_text_keeps_its_head_and_tail_within_the_budget(minilm_budget):
    ids = minilm_budget.encode(["start " + "middle " * 3000 + "end"])[0]
    assert len(ids) == 256
    tokens = minilm_budget.tokenizer.decode(ids)
    assert tokens.startswith("start middle") and tokens.endswith("middle end")


def test_windowed_tokenizing_gives_exactly_the_ids_of_the_whole_text(minilm_budget):
    assert minilm_budget.windowed
    texts = random_texts(seed=1, count=200)
    whole = [minilm_budget.cut(ids) for ids in minilm_budget.tokens(texts)]
    assert minilm_budget.encode(texts) == whole


def test_a_twenty_thousand_character_email_is_tokenized_only_in_its_windows(minilm_budget,
                                                                             monkeypatch):
    seen = []
    tokens = minilm_budget.tokens

    def spy(texts):
        seen.extend(len(t) for t in texts)
        return tokens(texts)

    monkeypatch.setattr(minilm_budget, "tokens", spy)
    email = ("Hello team, the export fails again. " * 600)[:20_000]
    minilm_budget.encode([email])
    assert seen and max(seen) <= minilm_budget.window


def test_a_tokenizer_that_may_split_across_spaces_always_reads_the_whole_text():
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "Ġ": 3, "Ġa": 4}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "a")], unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    budget = TokenBudget(bpe, 32)
    assert not budget.windowed
    text = "a b " * 5000
    assert budget.encode([text]) == [budget.cut(budget.tokens([text])[0])]
