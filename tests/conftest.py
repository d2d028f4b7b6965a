"""Shared fixtures: a tiny random encoder built here (never downloaded), a small labelled
ticket file, a model directory trained from them, and the flaskr-style app/client/runner."""
from __future__ import annotations

import json
import os
import random
import tempfile
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from smart_support import create_app

# Every app built by a test keeps its database out of the repository; tests that need a
# private database pass their own data_dir.
os.environ["SMART_SUPPORT_DATA_DIR"] = tempfile.mkdtemp(prefix="smart-support-tests-")
# Storm detection loads a second encoder (the packaged MiniLM) into every app; the tests that
# exercise it turn it on themselves.
os.environ.setdefault("SMART_SUPPORT_STORM_ENABLED", "false")

POSTGRES_ENV = "SMART_SUPPORT_TEST_POSTGRES_URL"
POSTGRES_HINT = (f"PostgreSQL tests are off: set {POSTGRES_ENV}="
                 "postgresql+psycopg://postgres@127.0.0.1:5432/test (a server you may create "
                 "and drop schemas in) to run them; .ci/run does")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CATEGORY_WORDS = {
    "Billing": ["refund", "charged", "twice", "invoice", "payment", "card", "price", "plan",
                "subscription", "receipt", "money", "overcharged"],
    "Technical": ["login", "error", "crash", "slow", "api", "timeout", "password", "sync",
                  "broken", "server", "bug", "page"],
    "Legal": ["lawyer", "gdpr", "contract", "copyright", "subpoena", "privacy", "terms",
              "court", "dmca", "clause", "lawsuit", "compliance"],
}
FILLER = ["the", "my", "is", "please", "help", "since", "today", "our", "team", "we", "and",
          "a", "it", "urgent", "hello", "thanks", "account", "your", "with", "for"]


def make_vocab(extra=()):
    words = SPECIAL + sorted({w for ws in CATEGORY_WORDS.values() for w in ws} | set(FILLER)
                             | set(extra))
    return {word: i for i, word in enumerate(words)}


def build_tiny_checkpoint(path: Path, kind: str = "bert") -> Path:
    """A randomly initialised 2-layer encoder and a WordPiece tokenizer, saved as a HF dir."""
    from transformers import (BertConfig, BertModel, BertTokenizer, DistilBertConfig,
                              DistilBertModel)

    import torch

    torch.manual_seed(0)  # the same random encoder in every run: a failure can be rerun
    vocab = make_vocab()
    tokenizer = BertTokenizer(vocab=vocab)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=37,
                                     max_position_embeddings=512))
    elif kind == "distilbert":
        model = DistilBertModel(DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2,
                                                 n_heads=2, hidden_dim=37,
                                                 max_position_embeddings=512))
    else:
        raise ValueError(kind)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tickets(n_per_category: int, seed: int = 0, categories=CATEGORY_WORDS) -> list[dict]:
    """Easily separable fixture tickets: a category's words plus filler, urgency by keyword."""
    rng = random.Random(seed)
    rows = []
    for category, words in categories.items():
        for i in range(n_per_category):
            picked = rng.sample(words, 3) + rng.sample(FILLER, 4)
            rng.shuffle(picked)
            urgent = "urgent" in picked
            rows.append({"id": f"{category[:1]}{i}", "subject": " ".join(picked[:2]),
                         "description": " ".join(picked),
                         "category": category,
                         "urgency": round(min(1.0, (0.85 if urgent else 0.2) + rng.random() * 0.1), 2)})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_ticket_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tickets")
    return {"train": write_jsonl(folder / "train.jsonl", make_tickets(40, seed=1)),
            "test": write_jsonl(folder / "test.jsonl", make_tickets(10, seed=2))}


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, tiny_base_model, tiny_ticket_files) -> Path:
    from smart_support.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "models"
    train(TrainConfig(data=tiny_ticket_files["train"], out=out, base_model=tiny_base_model,
                      epochs=6, batch_size=8, learning_rate=2e-3, max_tokens=64, progress=False))
    return out


@pytest.fixture
def model_copy(tmp_path, trained_model_dir) -> Path:
    """A private copy of the trained model directory, for tests that damage it."""
    return Path(shutil.copytree(trained_model_dir, tmp_path / "models"))


@pytest.fixture(scope="session")
def session_app(trained_model_dir):
    return create_app({"model_dir": trained_model_dir, "TESTING": True})


@pytest.fixture
def app(session_app):
    return session_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner():
    return CliRunner()


def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(POSTGRES_HINT)
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error means "not reachable"
        pytest.skip(f"{POSTGRES_ENV} is set but PostgreSQL is not reachable "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0]})")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A private, empty database per test: a SQLite file, or a fresh PostgreSQL schema that
    the test creates and drops (the server itself is never touched otherwise)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'desk.db'}"
        return
    import uuid

    from sqlalchemy import create_engine, text

    base = _postgres_base_url()
    schema = f"smart_support_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def make_desk_app(trained_model_dir, database_url):
    """Apps on this test's private database; every engine is closed at the end (PostgreSQL
    keeps a connection per pooled slot otherwise)."""
    made = []

    def make(**settings):
        app = create_app({"model_dir": trained_model_dir, "database_url": database_url,
                          "TESTING": True, **settings})
        made.append(app)
        return app

    yield make
    for app in made:
        if app.extensions.get("smart_support_prediction_log"):
            app.extensions["smart_support_prediction_log"].close()
        app.extensions["smart_support_storage"].engine.dispose()
