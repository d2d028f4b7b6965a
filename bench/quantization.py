"""How closely each int8 quantisation of the exported classifier follows its fp32 answers.

    .venv/bin/python bench/quantization.py [--model-dir models]    # about 1 minute

The export (smart_support/training/export.py) quantises with per-channel weight scales. This
re-quantises the directory's fp32 graph (onnx/classifier/model.onnx) per tensor, per channel,
and each with reduce_range, into a temporary directory, and runs every variant and fp32 over
the TRAINING tickets (data/train.jsonl): fidelity to fp32 needs no labels, so no held-out file
is read. Prints, per variant: argmax agreement with fp32, the mean and largest (over tickets)
of a ticket's largest class-probability change, and the mean change of urgency. Nothing is
written.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smart_support.inference import runtime as rt  # noqa: E402
from smart_support.inference.artifacts import load_artifacts  # noqa: E402
from smart_support.inference.predictor import Predictor, Ticket  # noqa: E402

VARIANTS = {"per tensor": {"per_channel": False, "reduce_range": False},
            "per channel (shipped)": {"per_channel": True, "reduce_range": False},
            "per tensor, reduce_range": {"per_channel": False, "reduce_range": True},
            "per channel, reduce_range": {"per_channel": True, "reduce_range": True}}


def answers(predictor: Predictor, tickets: list[Ticket]) -> tuple[np.ndarray, np.ndarray]:
    results, _ = predictor.predict(tickets)
    return (np.array([[r.scores[k] for k in predictor.labels] for r in results]),
            np.array([r.urgency for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "train.jsonl")
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    tickets = [Ticket(r.get("subject") or "", r["description"]) for r in rows]
    predictor = Predictor(load_artifacts(args.model_dir, "onnx"), 256, 32, "none", 1)
    reference_probs, reference_urgency = answers(predictor, tickets)
    fp32 = args.model_dir / rt.ONNX_DIR / rt.CLASSIFIER_EXPORT / rt.MODEL_FILES["none"]
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing hint
    print(f"{len(tickets)} tickets of {args.data.name}; fidelity to fp32 of {args.model_dir}")
    print(f"{'variant':28}{'argmax agree':>14}{'mean |dp|':>11}{'max |dp|':>10}"
          f"{'mean |du|':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in VARIANTS.items():
            path = Path(tmp) / "variant.onnx"
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, **options)
            predictor.encoder = rt.OnnxEncoder(path, 1)
            probs, urgency = answers(predictor, tickets)
            change = np.abs(probs - reference_probs).max(1)  # per ticket, over the classes
            agree = (probs.argmax(1) == reference_probs.argmax(1)).mean()
            print(f"{name:28}{agree:>14.4f}{change.mean():>11.4f}"
                  f"{change.max():>10.3f}{np.abs(urgency - reference_urgency).mean():>11.4f}")


if __name__ == "__main__":
    main()
