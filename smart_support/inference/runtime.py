"""Where the encoders run: ONNX Runtime (the default) or torch (SMART_SUPPORT_RUNTIME).

Measured here (README, "Performance"): the same int8 student answers a typical ticket faster
in ONNX Runtime than in torch, and a worker that never imports torch holds far less memory.
`smart-support export` (part of `make model`) writes the ONNX graphs next to the checkpoint:

    onnx/classifier/      model.onnx (fp32), model.int8.onnx, tokenizer.json, encoder.json
    onnx/storm-encoder/   the same for the storm-detection sentence encoder

encoder.json records the digest of every file, and for the classifier the digest of the
checkpoint weights it was exported from, so a retrained model with a stale export is refused
with the file named, never served with the old graph.
"""
from __future__ import annotations

import json
from pathlib import Path

from smart_support.inference.artifacts import ArtifactError, read_json, sha256_file

ONNX_DIR = "onnx"
CLASSIFIER_EXPORT = "classifier"
STORM_ENCODER_EXPORT = "storm-encoder"
MANIFEST_FILE = "encoder.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}
INPUTS = ("input_ids", "attention_mask")


def read_manifest(directory: Path) -> dict:
    """encoder.json of an exported directory, with the keys every reader relies on."""
    path = Path(directory) / MANIFEST_FILE
    if not Path(directory).is_dir():
        raise ArtifactError(directory, "no ONNX export here; run `smart-support export` "
                                       "(`make model` does)")
    manifest = read_json(path)
    for key in ("files", "pad_token_id", "outputs"):
        if key not in manifest:
            raise ArtifactError(path, f"lacks the key {key!r}; re-run `smart-support export`")
    return manifest


def verified_file(directory: Path, manifest: dict, name: str) -> Path:
    """`directory/name`, present and matching the digest the export recorded."""
    path = Path(directory) / name
    if not path.is_file():
        raise ArtifactError(path, "missing; re-run `smart-support export`")
    expected = manifest["files"].get(name)
    if not expected:
        raise ArtifactError(path, f"no digest recorded for it in {MANIFEST_FILE}")
    if sha256_file(path) != expected:
        raise ArtifactError(path, f"does not match the digest in {MANIFEST_FILE}")
    return path


def load_tokenizer(directory: Path, manifest: dict):
    from tokenizers import Tokenizer

    path = verified_file(directory, manifest, TOKENIZER_FILE)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ArtifactError(path, f"not a tokenizer file ({exc})") from None


class OnnxEncoder:
    """One ONNX Runtime session: numpy batches in, numpy arrays out (one per graph output)."""

    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArtifactError(path, f"ONNX Runtime cannot load it ({exc})") from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUTS):
            raise ArtifactError(path, f"inputs {names}, expected {list(INPUTS)}")

    def __call__(self, input_ids, attention_mask):
        out = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return tuple(out) if len(out) > 1 else out[0]


def onnx_encoder(directory: Path, manifest: dict, quantize: str, threads: int | None):
    return OnnxEncoder(verified_file(directory, manifest, MODEL_FILES[quantize]), threads)


def classifier_encoder(artifacts, layer: int, quantize: str, threads: int | None):
    """A callable (input_ids, attention_mask) -> (logits, pooled hidden state of `layer`)."""
    if artifacts.runtime == "torch":
        from smart_support.inference.torch_encoder import ClassifierOutputs, TorchEncoder

        return TorchEncoder(ClassifierOutputs(artifacts.model, layer), quantize, threads)
    return onnx_encoder(artifacts.export_dir, artifacts.export, quantize, threads)


def check_classifier_export(model_dir: Path, weights: Path, labels: list[str],
                            urgency: dict) -> tuple[Path, dict]:
    """The classifier's export directory and manifest, refused when it was exported from other
    weights, other labels or another urgency layer than the checkpoint beside it."""
    directory = model_dir / ONNX_DIR / CLASSIFIER_EXPORT
    manifest = read_manifest(directory)
    path = directory / MANIFEST_FILE
    if manifest.get("source_sha256") != sha256_file(weights):
        raise ArtifactError(path, f"exported from other weights than "
                                  f"{weights.relative_to(model_dir)}; re-run `smart-support "
                                  "export`")
    if manifest.get("labels") != labels:
        raise ArtifactError(path, f"labels {manifest.get('labels')} disagree with the "
                                  f"classifier's labels {labels}")
    if int(manifest.get("urgency_layer", -1)) != int(urgency.get("layer", -1)):
        raise ArtifactError(path, f"exported the hidden state of layer "
                                  f"{manifest.get('urgency_layer')}, urgency.json reads layer "
                                  f"{urgency.get('layer', -1)}; re-run `smart-support export`")
    return directory, manifest


def write_manifest(directory: Path, manifest: dict) -> None:
    files = {p.name: sha256_file(p) for p in sorted(Path(directory).iterdir())
             if p.is_file() and p.name != MANIFEST_FILE}
    (Path(directory) / MANIFEST_FILE).write_text(
        json.dumps({**manifest, "files": files}, indent=2) + "\n", encoding="utf-8")
