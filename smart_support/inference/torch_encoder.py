"""The encoder run by torch: training, the ONNX export, and SMART_SUPPORT_RUNTIME=torch.

Everything here imports torch, so the serving path only imports this module when the torch
runtime is chosen (inference/runtime.py).
"""
from __future__ import annotations

import numpy as np
import torch


def tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A padded batch from TokenBudget.pad as torch tensors (no copy)."""
    return {name: torch.from_numpy(array) for name, array in batch.items()}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def encoder_outputs(model, batch: dict[str, torch.Tensor], layer: int = -1):
    """Class logits and the mean-pooled hidden state of `layer`, from one forward pass."""
    out = model(**batch, output_hidden_states=True)
    return out.logits, mean_pool(out.hidden_states[layer], batch["attention_mask"])


def quantized(model):
    """Dynamic int8 quantisation of the Linear layers, in place: ~2x faster on this CPU for
    ~0.002 macro-F1 on the held-out files (README, "Model and accuracy")."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8, inplace=True)


class ClassifierOutputs(torch.nn.Module):
    """(logits, mean-pooled hidden state of `layer`) from input ids and attention mask: the
    two answers the predictor reads, as one module (also the graph the ONNX export traces)."""

    def __init__(self, model, layer: int):
        super().__init__()
        self.model = model
        self.layer = layer

    def forward(self, input_ids, attention_mask):
        return encoder_outputs(self.model, {"input_ids": input_ids,
                                            "attention_mask": attention_mask}, self.layer)


class SentenceEmbedding(torch.nn.Module):
    """Mean-pooled, unit-length last hidden state: a sentence encoder as it was trained."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)


class TorchEncoder:
    """Calls a module on numpy batches and answers numpy arrays, like an ONNX session."""

    def __init__(self, module: torch.nn.Module, quantize: str, threads: int | None):
        if threads:
            torch.set_num_threads(threads)
        module.eval()
        self.module = quantized(module) if quantize == "int8" else module

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray):
        with torch.inference_mode():
            out = self.module(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        if isinstance(out, tuple):
            return tuple(o.float().numpy() for o in out)
        return out.float().numpy()
