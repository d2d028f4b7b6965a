"""`smart-support train | evaluate`: build the model directory and measure it."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click


@click.group()
@click.option("--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Smart-Support: ticket triage models."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV or JSONL with subject, description, category, urgency.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Model directory to write.")
@click.option("--base-model", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hugging Face checkpoint directory [default: the packaged all-MiniLM-L6-v2].")
@click.option("--epochs", type=click.IntRange(1, 100), default=4, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 512), default=16, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=8e-5,
              show_default=True)
@click.option("--urgency-loss-weight", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Weight of the auxiliary urgency loss while fine-tuning.")
@click.option("--max-tokens", type=click.IntRange(16, 512), default=256, show_default=True)
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--review-precision", type=click.FloatRange(0, 1), default=0.97, show_default=True,
              help="Precision that auto-routed tickets must reach on validation; the "
                   "needs-review threshold is chosen for it.")
@click.option("--validation-group-field", default=None,
              help="Hold out whole groups named by this column (e.g. source = the ticket's "
                   "author) as the validation split, instead of a random stratified 15%.")
@click.option("--include-feedback", is_flag=True,
              help="Add the agents' corrections stored by POST /feedback to the training data.")
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A trained model directory: also learn its soft labels (distillation; "
                   "for a student made with `shrink`).")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With --teacher: the share of the loss given to matching the teacher.")
@click.option("--augment", type=click.IntRange(0, 10), default=0, show_default=True,
              help="Also train on this many perturbed copies of each training ticket (words "
                   "dropped, sentences reordered); with --teacher, each copy is labelled by "
                   "the teacher too.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(data, out, base_model, epochs, batch_size, learning_rate, urgency_loss_weight,
          max_tokens, seed, review_precision, validation_group_field, include_feedback,
          teacher, distill_weight, augment, no_progress) -> None:
    """Fine-tune the classifier, fit the urgency and baseline models, write OUT."""
    from smart_support.training.data import DataError
    from smart_support.training.train import TrainConfig, train as run_training

    config = TrainConfig(data=data, out=out, base_model=base_model, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate,
                         urgency_loss_weight=urgency_loss_weight, max_tokens=max_tokens,
                         seed=seed, review_precision=review_precision,
                         validation_group_field=validation_group_field,
                         teacher=teacher, distill_weight=distill_weight, augment=augment,
                         progress=not no_progress)
    try:
        if include_feedback:
            config.data, config.feedback_tickets = _with_feedback(data, validation_group_field)
            click.echo(f"training on {data} plus {config.feedback_tickets} corrections "
                       f"({config.data})")
        metadata = run_training(config)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    val = metadata["validation"]
    click.echo(f"wrote {out} (version {metadata['version']}, "
               f"{metadata['training_seconds']} s)")
    click.echo(f"validation ({val['tickets']} tickets): transformer macro-F1 "
               f"{val['transformer']['macro_f1']}, urgency Spearman "
               f"{val['transformer']['urgency']['spearman']}; baseline macro-F1 "
               f"{val['baseline']['macro_f1']}, urgency Spearman "
               f"{val['baseline']['urgency']['spearman']}")
    calibration, review = metadata["calibration"], metadata["review"]
    click.echo(f"calibration: temperature {calibration['temperature']}, validation ECE "
               f"{calibration['validation_ece_before']} -> {calibration['validation_ece_after']}; "
               f"needs review below confidence {review['threshold']} "
               f"({review['review_share']:.1%} of validation tickets, auto-routed precision "
               f"{review['auto_precision']})")


def _write_report(out: Path | None, report: dict) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"report written to {out}")


def _storage():
    settings, storage = _storage_unmigrated()
    storage.migrate()
    return settings, storage


def _with_feedback(data: Path, group_field: str | None) -> tuple[Path, int]:
    """The training file plus every stored correction, as one JSONL file in the data dir
    (corrections form their own validation group, "feedback")."""
    from smart_support.training.data import load_tickets

    settings, storage = _storage()
    tickets = load_tickets(data, group_field)
    group_field = group_field or "source"
    rows = [{"subject": t.subject, "description": t.description, "category": t.category,
             "urgency": t.urgency, group_field: t.group or "training"} for t in tickets]
    added = 0
    for fix in reversed(storage.feedback_rows()):
        urgency = fix["urgency"] if fix["urgency"] is not None else fix["predicted_urgency"]
        if urgency is None:
            continue  # nothing to learn urgency from; the category alone cannot be a row
        rows.append({"subject": fix["subject"], "description": fix["description"],
                     "category": fix["category"], "urgency": urgency, group_field: "feedback"})
        added += 1
    combined = Path(settings.data_dir) / "train-with-feedback.jsonl"
    combined.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    return combined, added


@main.command()
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory [default: SMART_SUPPORT_MODEL_DIR or models].")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The model's training file [default: the path recorded in metadata.json]; "
                   "only its validation split is read.")
def ensemble(model_dir, data) -> None:
    """Fit the transformer + baseline blend on the model's validation split (ensemble.json),
    for SMART_SUPPORT_ENSEMBLE."""
    from smart_support.config import ConfigError, Settings
    from smart_support.inference.artifacts import ArtifactError
    from smart_support.training.data import DataError
    from smart_support.training.ensemble import fit_ensemble

    try:
        settings = Settings.from_env(**({"model_dir": model_dir} if model_dir else {}))
        fitted = fit_ensemble(settings, data)
    except (ArtifactError, DataError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    scores, review = fitted["validation"]["macro_f1"], fitted["review"]
    click.echo(f"wrote ensemble.json for {fitted['model_version']}: baseline weight "
               f"{fitted['baseline_weight']}; validation ({fitted['validation']['tickets']} "
               f"tickets) macro-F1 transformer {scores['transformer']:.4f}, baseline "
               f"{scores['baseline']:.4f}, blend {scores['ensemble']:.4f}; temperature "
               f"{fitted['calibration']['temperature']}; needs review below "
               f"{review['threshold']} ({review['review_share']:.1%} of validation tickets)")


@main.command()
@click.option("--days", type=click.IntRange(1, 3650), default=14, show_default=True)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model whose training data is the reference [default: SMART_SUPPORT_MODEL_DIR].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG plot here.")
def drift(days, model_dir, out, plot) -> None:
    """Report how live traffic moved from the training data: category mix, confidence, review."""
    from smart_support.inference.artifacts import (
        METADATA_FILE, ArtifactError, fitted_metadata, load_ensemble, read_json,
    )
    from smart_support.training.drift import drift_plot, drift_report, render_drift

    settings, storage = _storage()
    folder = Path(model_dir or settings.model_dir)
    try:
        metadata = read_json(folder / METADATA_FILE)
        # with the ensemble served, live confidence is the blend's: compare it with the blend's
        ensemble = load_ensemble(folder, metadata) if settings.ensemble else None
        metadata = fitted_metadata(metadata, ensemble)
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None
    report = drift_report(storage.prediction_rows(days), metadata, days)
    click.echo(render_drift(report))
    _write_report(out, report)
    if plot and report["tickets"]:
        drift_plot(report, plot)
        click.echo(f"plot written to {plot}")


@main.command()
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Labelled tickets to evaluate on (never the training file).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory [default: SMART_SUPPORT_MODEL_DIR or models].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here.")
@click.option("--alert-threshold", type=click.FloatRange(0, 1), default=0.8, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a reliability diagram (PNG) here.")
def evaluate(data, model_dir, out, alert_threshold, plot) -> None:
    """Score the model, the routing rule and the baseline on a labelled file."""
    from smart_support.config import ConfigError, Settings
    from smart_support.inference.artifacts import ArtifactError
    from smart_support.training.data import DataError
    from smart_support.training.evaluate import (
        evaluate as run_evaluation, reliability_plot, render_report,
    )

    try:
        settings = Settings.from_env(**({"model_dir": model_dir} if model_dir else {}))
        report = run_evaluation(data, settings, alert_threshold)
    except (ArtifactError, DataError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_report(report))
    _write_report(out, report)
    if plot:
        reliability_plot(report, plot)
        click.echo(f"reliability diagram written to {plot}")


@main.command()
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              multiple=True, help="Labelled tickets to score both models on (never either's "
              "training file); repeat it to pool several files into one sample.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory [default: SMART_SUPPORT_MODEL_DIR or models].")
@click.option("--against", "against_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="The other model directory.")
@click.option("--against-runtime", type=click.Choice(["onnx", "torch"]), default=None,
              help="Its runtime [default: the same as the model's].")
@click.option("--against-quantize", type=click.Choice(["none", "int8"]), default=None,
              help="Its quantization [default: the same as the model's].")
@click.option("--against-ensemble", is_flag=True,
              help="Blend the other model with its baseline too [default: never; the model "
                   "blends when SMART_SUPPORT_ENSEMBLE is on].")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=2000, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON report here.")
def compare(data, model_dir, against_dir, against_runtime, against_quantize, against_ensemble,
            resamples, out) -> None:
    """Macro-F1 of two models on the same tickets, with a paired-bootstrap interval of the
    difference."""
    from smart_support.config import ConfigError, Settings
    from smart_support.inference.artifacts import ArtifactError
    from smart_support.training.data import DataError
    from smart_support.training.evaluate import compare as run_comparison, render_comparison

    try:
        settings = Settings.from_env(**({"model_dir": model_dir} if model_dir else {}))
        against = Settings.from_env(
            model_dir=against_dir, runtime=against_runtime or settings.runtime,
            quantize=against_quantize or settings.quantize, ensemble=against_ensemble)
        report = run_comparison(list(data), settings, against, resamples)
    except (ArtifactError, DataError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_comparison(report))
    _write_report(out, report)


if __name__ == "__main__":
    sys.exit(main())


def _outbox():
    from smart_support.alerts.outbox import Outbox

    settings, storage = _storage()
    return Outbox.from_settings(storage, settings)


@main.group()
def alerts() -> None:
    """Inspect and replay urgent-ticket alert deliveries."""


@alerts.command("list")
@click.option("--status", type=click.Choice(["pending", "delivering", "delivered", "dead",
                                            "suppressed"]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_alerts(status, limit) -> None:
    """Deliveries, newest first."""
    for row in _outbox().rows(status, limit):
        click.echo(f"{row['alert_id']}  {row['status']:10} attempts {row['attempts']}  "
                   f"{row['format']:8} {row['url']}  {row['last_error'] or ''}")


@alerts.command("replay")
@click.argument("alert_id")
def replay_alert(alert_id) -> None:
    """Queue an alert's dead deliveries again; a running service delivers them."""
    count = _outbox().replay(alert_id)
    if not count:
        raise click.ClickException(f"no dead delivery for alert {alert_id}")
    click.echo(f"requeued {count} deliveries of {alert_id}")


@main.group()
def db() -> None:
    """The database schema (Alembic migrations; the service also upgrades at start-up)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision) -> None:
    """Apply migrations up to REVISION (SMART_SUPPORT_DATABASE_URL, else the SQLite file)."""
    from alembic.util import CommandError

    try:
        _storage_unmigrated()[1].migrate(revision)
    except CommandError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database at revision {revision}")


@db.command("current")
def db_current() -> None:
    """The database's revision and the newest one this release ships."""
    from smart_support import migrations

    _, storage = _storage_unmigrated()
    with storage.engine.connect() as connection:
        click.echo(f"current {migrations.current(connection)}  head {migrations.head()}")


@db.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message) -> None:
    """Write a new migration autogenerated from storage.metadata (for developers)."""
    from alembic import command

    from smart_support import migrations

    _, storage = _storage_unmigrated()
    with storage.engine.connect() as connection:
        command.revision(migrations.alembic_config(connection), message=message,
                         autogenerate=True)


def _storage_unmigrated():
    from smart_support.config import Settings
    from smart_support.storage import Storage, database_url

    settings = Settings.from_env()
    return settings, Storage(database_url(settings.data_dir, settings.database_url))


@main.command()
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("models"), show_default=True, help="The trained model to shrink.")
@click.option("--layers", type=click.IntRange(1, 48), required=True,
              help="Encoder layers the student keeps (evenly spaced).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write the student checkpoint (a base for `train --base-model`).")
def shrink(model_dir, layers, out) -> None:
    """Cut a fine-tuned classifier down to fewer layers, as the base of a faster student."""
    from smart_support.training.shrink import shrink as run_shrink

    try:
        kept = run_shrink(model_dir / "classifier", out, layers)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out}: layers {kept} of the classifier in {model_dir}; now train it: "
               f"smart-support train --base-model {out} --data ... --out ...")


@main.command()
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("models"), show_default=True, help="The trained model to export.")
@click.option("--storm-encoder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hugging Face sentence-encoder directory for storm detection "
                   "[default: the packaged all-MiniLM-L6-v2].")
def export(model_dir, storm_encoder) -> None:
    """Export the classifier and the storm encoder to ONNX (fp32 and int8) for the onnx runtime."""
    from smart_support.inference.artifacts import ArtifactError
    from smart_support.training.export import ExportError, export_model_dir

    try:
        written = export_model_dir(model_dir, storm_encoder)
    except (ArtifactError, ExportError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, manifest in written.items():
        click.echo(f"exported the {manifest['kind']} of {model_dir} ({manifest['source']}): "
                   f"ONNX Runtime within {manifest['max_abs_difference_fp32']:.1e} of torch")
