"""Ticket -> category probabilities and urgency, in the Hugging Face pipeline's three stages.

preprocess: one text per ticket, tokenized once, long e-mails cut to a token budget keeping the
            head and the tail (greeting and subject up front, the actual ask often at the end).
forward:    one encoder pass per batch, tickets sorted by length so padding stays small; the
            same pass gives the class logits and the hidden states the urgency ridge reads.
postprocess: softmax, labels from the model config, urgency clipped into [0, 1].
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

HEAD_SHARE = 0.75
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
    """Tokenize without truncation, then keep head and tail tokens within `max_tokens`."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        with_special = tokenizer("a")["input_ids"]
        core = tokenizer("a", add_special_tokens=False)["input_ids"]
        start = _find(with_special, core)
        self.prefix = list(with_special[:start])
        self.suffix = list(with_special[start + len(core):])
        self.inner = max_tokens - len(self.prefix) - len(self.suffix)

    def cut(self, ids: Sequence[int]) -> list[int]:
        if len(ids) > self.inner:
            head = int(self.inner * HEAD_SHARE)
            ids = list(ids[:head]) + list(ids[len(ids) - (self.inner - head):])
        return self.prefix + list(ids) + self.suffix

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        pieces = self.tokenizer(list(texts), add_special_tokens=False,
                                verbose=False)["input_ids"]
        return [self.cut(ids) for ids in pieces]

    def pad(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in sequences)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i:i + len(needle)]) == list(needle):
            return i
    raise ValueError("tokenizer adds special tokens in a way this budget cannot handle")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def encoder_outputs(model, batch: dict[str, torch.Tensor], layer: int = -1):
    """Class logits and the mean-pooled hidden state of `layer`, from one forward pass."""
    out = model(**batch, output_hidden_states=True)
    return out.logits, mean_pool(out.hidden_states[layer], batch["attention_mask"])


def length_sorted_batches(sequences: Sequence[Sequence[int]], size: int) -> Iterable[list[int]]:
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def quantized(model):
    """Dynamic int8 quantisation of the Linear layers, in place: ~3x faster on this CPU for
    ~0.002 macro-F1 on the held-out files (README, "Accuracy")."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8, inplace=True)


class Predictor:
    """Runs the classifier and the urgency ridge over tickets; created once per process."""

    def __init__(self, artifacts, max_tokens: int, batch_size: int, quantize: str = "none"):
        self.labels = list(artifacts.labels)
        self.model = quantized(artifacts.model) if quantize == "int8" else artifacts.model
        self.budget = TokenBudget(artifacts.tokenizer, max_tokens)
        self.batch_size = batch_size
        urgency = artifacts.urgency
        self.urgency_layer = int(urgency.get("layer", -1))
        self.urgency_coef = torch.tensor(urgency["coef"], dtype=torch.float32)
        self.urgency_intercept = float(urgency["intercept"])
        self.temperature = float(artifacts.metadata.get("calibration", {}).get("temperature", 1.0))

    def _forward(self, sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated class probabilities and raw urgency per token sequence, in input order."""
        probs = np.zeros((len(sequences), len(self.labels)), dtype=np.float32)
        urgency = np.zeros(len(sequences), dtype=np.float32)
        with torch.inference_mode():
            for rows in length_sorted_batches(sequences, self.batch_size):
                batch = self.budget.pad([sequences[i] for i in rows])
                logits, pooled = encoder_outputs(self.model, batch, self.urgency_layer)
                probs[rows] = torch.softmax(logits.float() / self.temperature, dim=-1).numpy()
                urgency[rows] = (pooled.float() @ self.urgency_coef + self.urgency_intercept).numpy()
        return probs, urgency

    def predict(self, tickets: Sequence[Ticket]) -> tuple[list[Prediction], dict[str, float]]:
        """Predictions in input order, plus seconds spent in each stage."""
        timings = {}
        started = time.perf_counter()
        sequences = self.budget.encode([ticket_text(t.subject, t.description) for t in tickets])
        timings["preprocess"] = time.perf_counter() - started

        started = time.perf_counter()
        probs, urgency = self._forward(sequences)
        timings["forward"] = time.perf_counter() - started

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
        the drop in the label's probability is its weight (occlusion, one batched pass)."""
        text = ticket_text(ticket.subject, ticket.description)
        words = list(dict.fromkeys(w.lower() for w in WORD.findall(text) if len(w) > 1))
        words = words[:max_words]
        variants = [re.sub(rf"(?<!\w){re.escape(w)}(?!\w)", " ", text, flags=re.IGNORECASE)
                    for w in words]
        probs, _ = self._forward(self.budget.encode([text] + variants))
        column = self.labels.index(label)
        weights = probs[0, column] - probs[1:, column]
        ranked = sorted(zip(words, weights), key=lambda item: item[1], reverse=True)
        weighted = [{"word": w, "weight": round(float(v), 4)} for w, v in ranked[:top]]
        return [item for item in weighted if item["weight"] > 0]

    def warm_up(self) -> None:
        """One pass at start-up so the first real request does not pay for lazy init."""
        self.predict([Ticket("warm-up", "The service is starting.")])
