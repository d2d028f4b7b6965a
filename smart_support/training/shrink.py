"""A smaller student from a fine-tuned classifier: keep some of its encoder layers (evenly
spaced, as DistilBERT was initialised from BERT), then fine-tune it like any base model
(`smart-support train --base-model STUDENT_DIR`). Fewer layers: proportionally less compute
per ticket; the embeddings, the tokenizer and the classification head are kept as they are."""
from __future__ import annotations

import copy
from pathlib import Path

import torch


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` of `total` layer indices, spread out and always including the last layer."""
    if not 1 <= keep <= total:
        raise ValueError(f"can keep 1 to {total} layers, not {keep}")
    step = total / keep
    return sorted({total - 1 - int(i * step) for i in range(keep)})


def _layer_list(model) -> tuple[object, str, torch.nn.ModuleList]:
    """(parent module, attribute name, ModuleList) of the encoder's transformer layers."""
    for name, module in model.named_modules():
        for attr in ("layer", "layers"):
            layers = getattr(module, attr, None)
            if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0 \
                    and name.split(".")[-1] in {"encoder", "transformer"}:
                return module, attr, layers
    raise ValueError("no encoder layer list found: only BERT-like and DistilBERT-like models "
                     "can be shrunk")


def shrink(classifier_dir: Path, out: Path, keep: int) -> list[int]:
    """Write a `keep`-layer copy of the classifier in `classifier_dir` to `out`; returns the
    kept layer indices."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    teacher = AutoModelForSequenceClassification.from_pretrained(classifier_dir,
                                                                 local_files_only=True)
    student = copy.deepcopy(teacher)
    parent, attr, layers = _layer_list(student)
    kept = evenly_spaced(len(layers), keep)
    setattr(parent, attr, torch.nn.ModuleList([layers[i] for i in kept]))
    for field in ("num_hidden_layers", "n_layers"):
        if hasattr(student.config, field):
            setattr(student.config, field, keep)
    if hasattr(student.config, "layer_types") and student.config.layer_types:
        student.config.layer_types = [student.config.layer_types[i] for i in kept]
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    AutoTokenizer.from_pretrained(classifier_dir, local_files_only=True).save_pretrained(out)
    return kept
