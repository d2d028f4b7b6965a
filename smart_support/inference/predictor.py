"""Ticket -> category probabilities and urgency, in the Hugging Face pipeline's three stages.

preprocess: one text per ticket, tokenized once, long e-mails cut to a token budget keeping the
            head and the tail (greeting and subject up front, the actual ask often at the end).
forward:    one encoder pass per batch, tickets sorted by length so padding stays small; the
            same pass gives the class logits and the hidden states the urgency ridge reads.
            The pass runs in ONNX Runtime or torch (inference/runtime.py); this module needs
            neither, so a server on ONNX Runtime never imports torch.
postprocess: softmax, labels from the model config, urgency clipped into [0, 1]; with a Blend
            (SMART_SUPPORT_ENSEMBLE), the class probabilities mixed with the TF-IDF baseline's.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

HEAD_SHARE = 0.75
# A long text is tokenized only in its first and last CHARS_PER_TOKEN x budget characters, when
# that provably gives the same ids (see TokenBudget.encode): a 20,000-character e-mail then
# costs about what a typical ticket does, not ten times more.
CHARS_PER_TOKEN = 8
# Tokenizers whose splits never cross whitespace and whose normalizer maps characters one by
# one: the tokens of a text cut at whitespace are then a prefix (or suffix) of the whole text's.
WHITESPACE_BOUNDED = {"pre_tokenizer": {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"},
                      "normalizer": {"BertNormalizer", "Lowercase", "NFD", "NFKD", "StripAccents",
                                     None}}
# Only these count as cut points: whitespace to every normalizer and pre-tokenizer above (not
# Python's wider str.isspace, which includes control characters BertNormalizer deletes).
SPACES = (" ", "\t", "\n", "\r")
WORD = re.compile(r"[^\W\d_][\w'’-]*")


@dataclass(frozen=True)
class Ticket:
    subject: str
    description: str


@dataclass
class Prediction:
    scores: dict[str, float]
    urgency: float


def ticket_text(subject: str, description: str) -> str:
    """The single text the models read; training and serving must build it the same way."""
    subject = (subject or "").strip()
    description = (description or "").strip()
    return f"{subject}\n{description}" if subject else description


class TokenBudget:
    """Tokenize without truncation, then keep head and tail tokens within `max_tokens`.

    Works on the `tokenizers` library's Tokenizer, which both runtimes share: a transformers
    tokenizer is accepted and its backend used, so training and serving cut texts alike."""

    def __init__(self, tokenizer, max_tokens: int, pad_id: int | None = None):
        from tokenizers import Tokenizer

        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_token_id", None)
        # A private copy: transformers sets truncation and padding on its backend per call.
        self.tokenizer = Tokenizer.from_str(backend.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.pad_id = int(pad_id or 0)
        self.max_tokens = max_tokens
        with_special = self.tokenizer.encode("a").ids
        core = self.tokenizer.encode("a", add_special_tokens=False).ids
        start = _find(with_special, core)
        self.prefix = list(with_special[:start])
        self.suffix = list(with_special[start + len(core):])
        self.inner = max_tokens - len(self.prefix) - len(self.suffix)
        self.head = int(self.inner * HEAD_SHARE)
        self.window = CHARS_PER_TOKEN * max_tokens
        self.windowed = _whitespace_bounded(self.tokenizer)

    def cut(self, ids: Sequence[int]) -> list[int]:
        if len(ids) > self.inner:
            ids = list(ids[:self.head]) + list(ids[len(ids) - (self.inner - self.head):])
        return self.prefix + list(ids) + self.suffix

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens and without the budget."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Budgeted ids per text. A long text is tokenized as its head and tail windows, cut
        at whitespace: with a whitespace-bounded tokenizer their tokens are a prefix and a
        suffix of the whole text's, so when each holds enough tokens the result is exactly
        cut(tokens(text)); otherwise the whole text is tokenized."""
        results: list[list[int] | None] = [None] * len(texts)
        whole = []
        for i, text in enumerate(texts):
            results[i] = self._windowed(text) if self.windowed else None
            if results[i] is None:
                whole.append(i)
        for i, ids in zip(whole, self.tokens([texts[i] for i in whole])):
            results[i] = self.cut(ids)
        return results

    def _windowed(self, text: str) -> list[int] | None:
        if len(text) <= 2 * self.window:
            return None
        head_end = _last_space(text, 0, self.window)
        tail_start = _first_space(text, len(text) - self.window, len(text))
        if head_end is None or tail_start is None or head_end >= tail_start:
            return None
        head, tail = self.tokens([text[:head_end], text[tail_start + 1:]])
        tail_count = self.inner - self.head
        if len(head) < self.head or len(tail) < tail_count:
            return None
        return self.prefix + head[:self.head] + tail[len(tail) - tail_count:] + self.suffix

    def pad(self, sequences: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        width = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def _whitespace_bounded(tokenizer) -> bool:
    import json

    config = json.loads(tokenizer.to_str())

    def kinds(part):
        if part is None:
            return {None}
        if part.get("type") == "Sequence":
            items = part.get("pretokenizers") or part.get("normalizers") or []
            return set().union(*(kinds(item) for item in items)) if items else {None}
        return {part.get("type")}

    return all(kinds(config.get(key)) <= allowed for key, allowed in WHITESPACE_BOUNDED.items())


def _last_space(text: str, start: int, end: int) -> int | None:
    """Index of the last plain whitespace character in text[start:end], or None."""
    found = max(text.rfind(c, start, end) for c in SPACES)
    return found if found >= 0 else None


def _first_space(text: str, start: int, end: int) -> int | None:
    found = [i for i in (text.find(c, start, end) for c in SPACES) if i >= 0]
    return min(found) if found else None


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i:i + len(needle)]) == list(needle):
            return i
    raise ValueError("tokenizer adds special tokens in a way this budget cannot handle")


def length_sorted_batches(sequences: Sequence[Sequence[int]], size: int) -> Iterable[list[int]]:
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): probabilities made less (T > 1) or more (T < 1) confident."""
    return softmax(np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature)


def blend_probabilities(transformer: np.ndarray, baseline: np.ndarray, weight: float,
                        temperature: float = 1.0) -> np.ndarray:
    """(1 - weight) x the transformer's probabilities + weight x the baseline's, tempered."""
    mixed = (1.0 - weight) * np.asarray(transformer) + weight * np.asarray(baseline)
    return mixed if temperature == 1.0 else temper(mixed, temperature)


@dataclass(frozen=True)
class Blend:
    """The transformer and the TF-IDF baseline answering together: the two models err on
    different tickets, and averaging them beat both on every held-out file (README, "Model
    and accuracy"). `weight`, `temperature` and the decisions built on the mix are fitted on
    the model's validation split (ensemble.json, `smart-support ensemble`). Urgency stays the
    transformer's, which ranks it better than the baseline on every file."""

    baseline: object  # a BaselinePredictor: its predict_texts gives probabilities in label order
    weight: float
    temperature: float = 1.0

    def __call__(self, transformer: np.ndarray, texts: Sequence[str],
                 window: int) -> np.ndarray:
        """`window`: the baseline reads at most the first and the last `window` characters
        of a text, as the transformer reads only a head and a tail (TokenBudget)."""
        baseline, _ = self.baseline.predict_texts([head_and_tail(t, window) for t in texts])
        return blend_probabilities(transformer, baseline, self.weight,
                                   self.temperature).astype(np.float32)


def head_and_tail(text: str, chars: int) -> str:
    """A text longer than 2 x `chars` cut to its first and last `chars` characters. The
    baseline's n-grams cost time in proportion to the text: uncut, a 20,000-character e-mail
    cost the blend about 15 ms more than a typical ticket. No ticket in our files or the outside
    author's is that long (the longest has 2,575 characters), so no measured answer changes."""
    return text if len(text) <= 2 * chars else f"{text[:chars]}\n{text[-chars:]}"


def blend_of(ensemble: dict | None, baseline) -> Blend | None:
    """The Predictor's blend for a loaded ensemble.json (artifacts.load_ensemble), or None."""
    if ensemble is None:
        return None
    return Blend(baseline, float(ensemble["baseline_weight"]),
                 float(ensemble["calibration"]["temperature"]))


class Predictor:
    """Runs the classifier and the urgency ridge over tickets; created once per process.

    `threads`: intra-op threads of the encoder (None: the runtime's default, all cores).
    `blend`: mix the class probabilities with the baseline's (None: the transformer alone)."""

    def __init__(self, artifacts, max_tokens: int, batch_size: int, quantize: str = "none",
                 threads: int | None = None, blend: Blend | None = None):
        from smart_support.inference.runtime import classifier_encoder

        self.labels = list(artifacts.labels)
        urgency = artifacts.urgency
        self.urgency_layer = int(urgency.get("layer", -1))
        self.encoder = classifier_encoder(artifacts, self.urgency_layer, quantize, threads)
        self.budget = TokenBudget(artifacts.tokenizer, max_tokens, artifacts.pad_token_id)
        self.batch_size = batch_size
        self.urgency_coef = np.asarray(urgency["coef"], dtype=np.float32)
        self.urgency_intercept = float(urgency["intercept"])
        self.temperature = float(artifacts.metadata.get("calibration", {}).get("temperature", 1.0))
        self.blend = blend

    def _forward(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated class probabilities and raw urgency per token sequence, in input order."""
        probs = np.zeros((len(sequences), len(self.labels)), dtype=np.float32)
        urgency = np.zeros(len(sequences), dtype=np.float32)
        for rows in length_sorted_batches(sequences, self.batch_size):
            batch = self.budget.pad([sequences[i] for i in rows])
            logits, pooled = self.encoder(batch["input_ids"], batch["attention_mask"])
            probs[rows] = softmax(logits.astype(np.float32) / self.temperature)
            urgency[rows] = pooled.astype(np.float32) @ self.urgency_coef + self.urgency_intercept
        return probs, urgency

    def predict(self, tickets: Sequence[Ticket]) -> tuple[list[Prediction], dict[str, float]]:
        """Predictions in input order, plus seconds spent in each stage."""
        timings = {}
        started = time.perf_counter()
        texts = [ticket_text(t.subject, t.description) for t in tickets]
        sequences = self.budget.encode(texts)
        timings["preprocess"] = time.perf_counter() - started

        started = time.perf_counter()
        probs, urgency = self._forward(sequences)
        timings["forward"] = time.perf_counter() - started

        if self.blend is not None:
            started = time.perf_counter()
            probs = self.blend(probs, texts, self.budget.window)
            timings["blend"] = time.perf_counter() - started

        started = time.perf_counter()
        results = [
            Prediction({label: float(p) for label, p in zip(self.labels, row)},
                       float(np.clip(u, 0.0, 1.0)))
            for row, u in zip(probs, urgency)
        ]
        timings["postprocess"] = time.perf_counter() - started
        return results, timings

    def explain(self, ticket: Ticket, label: str, max_words: int = 64,
                top: int = 8) -> list[dict]:
        """The words that pushed `label` up most: each distinct word is removed in turn and
        the drop in the label's probability is its weight (occlusion, one batched pass). With
        a blend, the probability is the blend's: the explanation is of the answer served."""
        text = ticket_text(ticket.subject, ticket.description)
        words = list(dict.fromkeys(w.lower() for w in WORD.findall(text) if len(w) > 1))
        words = words[:max_words]
        variants = [re.sub(rf"(?<!\w){re.escape(w)}(?!\w)", " ", text, flags=re.IGNORECASE)
                    for w in words]
        texts = [text] + variants
        probs, _ = self._forward(self.budget.encode(texts))
        if self.blend is not None:
            probs = self.blend(probs, texts, self.budget.window)
        column = self.labels.index(label)
        weights = probs[0, column] - probs[1:, column]
        ranked = sorted(zip(words, weights), key=lambda item: item[1], reverse=True)
        weighted = [{"word": w, "weight": round(float(v), 4)} for w, v in ranked[:top]]
        return [item for item in weighted if item["weight"] > 0]

    def warm_up(self) -> None:
        """One pass at start-up so the first real request does not pay for lazy init."""
        self.predict([Ticket("warm-up", "The service is starting.")])
