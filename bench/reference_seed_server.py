"""REFERENCE ONLY, not the product: a server shaped like the hackathon seed, to compare against.

The seed answered each POST /classify with two separate models, one for the category and one
for the urgency, each running its own unbatched fp32 forward pass, plus a keyword rule that sent
every ticket mentioning a billing word to Billing. This file reproduces that *shape*:

  * two independent copies of a model, each loaded fp32 (no quantisation),
  * per request: tokenise and run copy 1 (category logits), tokenise and run copy 2 (urgency),
    one ticket at a time, no length sorting, no batching,
  * the always-on billing keyword rule, as a substring test.

Models (REFERENCE_ARCH):
  * distilbert (default): two DistilBERT-base models (6 layers, hidden 768, 12 heads, FFN 3072,
    66M parameters: the seed's architecture) built from DistilBertConfig() with RANDOM weights,
    because no DistilBERT checkpoint is available offline. The cost of a forward pass does not
    depend on the weights' values, so the timing is the seed's; the answers are meaningless,
    and only the timing is used. The tokenizer is the shipped one (the same uncased vocabulary).
  * minilm: both copies are the shipped fp32 MiniLM classifier (22M parameters), about 3x
    cheaper per pass than DistilBERT: a reference faster than the seed, for a lower bound.
What else differs from the real seed, in the reference's favour:
  * inputs are truncated at the product's token budget (256) instead of DistilBERT's 512.
  * no access log, no request validation, no metrics: less work per request than the product.
  * torch uses 1 thread per worker and gunicorn 2 sync workers: the same CPU layout as the
    product on this 2-core machine.

Started by bench/run.py from the bench/ directory (so the repo's gunicorn.conf.py is not read):

    REFERENCE_MODEL_DIR=/abs/path/models ../.venv/bin/gunicorn -w 2 -b 127.0.0.1:PORT \
        reference_seed_server:app
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from flask import Flask, jsonify, request
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_DIR = Path(os.environ.get("REFERENCE_MODEL_DIR", "../models")).resolve()
MAX_LENGTH = int(os.environ.get("REFERENCE_MAX_TOKENS", "256"))
BILLING_WORDS = ("refund", "charge", "invoice", "payment", "paid", "billing", "bill", "card",
                 "price", "subscription", "receipt", "vat")

torch.set_num_threads(int(os.environ.get("REFERENCE_TORCH_THREADS", "1")))


ARCH = os.environ.get("REFERENCE_ARCH", "distilbert")


def _load():
    """Two separate fp32 model copies, as the seed's two pipelines were."""
    classifier_dir = MODEL_DIR / "classifier"
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir, local_files_only=True)
    urgency = json.loads((MODEL_DIR / "urgency.json").read_text(encoding="utf-8"))
    if ARCH == "distilbert":
        from transformers import DistilBertConfig, DistilBertForSequenceClassification

        shipped = AutoModelForSequenceClassification.from_pretrained(classifier_dir,
                                                                     local_files_only=True)
        torch.manual_seed(0)
        config = DistilBertConfig(vocab_size=tokenizer.vocab_size, num_labels=len(
            shipped.config.id2label), id2label=shipped.config.id2label)
        category_model = DistilBertForSequenceClassification(config).eval()
        urgency_model = DistilBertForSequenceClassification(config).eval()
        # a ridge of the right width (random): the seed's regression head costs nothing
        urgency = {"coef": (torch.randn(config.dim) * 0.01).tolist(), "intercept": 0.5,
                   "layer": -1}
        return tokenizer, category_model, urgency_model, urgency
    category_model = AutoModelForSequenceClassification.from_pretrained(
        classifier_dir, local_files_only=True).eval()
    urgency_model = AutoModelForSequenceClassification.from_pretrained(
        classifier_dir, local_files_only=True).eval()
    return tokenizer, category_model, urgency_model, urgency


TOKENIZER, CATEGORY_MODEL, URGENCY_MODEL, URGENCY = _load()
LABELS = [CATEGORY_MODEL.config.id2label[i] for i in range(CATEGORY_MODEL.config.num_labels)]
URGENCY_COEF = torch.tensor(URGENCY["coef"], dtype=torch.float32)
URGENCY_LAYER = int(URGENCY.get("layer", -1))

app = Flask(__name__)


def _encode(text: str) -> dict:
    return TOKENIZER(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")


def classify_text(text: str) -> dict:
    with torch.no_grad():
        probs = torch.softmax(CATEGORY_MODEL(**_encode(text)).logits[0], dim=-1)
        encoded = _encode(text)
        hidden = URGENCY_MODEL(**encoded, output_hidden_states=True).hidden_states[URGENCY_LAYER]
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        urgency = float(pooled[0] @ URGENCY_COEF + URGENCY["intercept"])
    scores = {label: round(float(p), 4) for label, p in zip(LABELS, probs)}
    category = max(scores, key=scores.get)
    if any(word in text.lower() for word in BILLING_WORDS):  # the seed's unconditional rule
        category = "Billing" if "Billing" in LABELS else category
    return {"category": category, "urgency_score": round(min(1.0, max(0.0, urgency)), 4),
            "scores": scores}


# One pass at import (in each worker, after the fork) so the first request pays no lazy init.
classify_text("warm-up")


@app.post("/classify")
def classify():
    started = time.perf_counter()
    body = request.get_json(force=True)
    text = f"{body.get('subject') or ''}\n{body['description']}"
    result = classify_text(text)
    result["reference"] = f"seed-shaped, fp32 {ARCH} x2"
    result["latency_seconds"] = round(time.perf_counter() - started, 6)
    return jsonify(result)


@app.get("/ready")
def ready():
    return {"ready": True, "reference": True, "arch": ARCH, "model_dir": str(MODEL_DIR)}
