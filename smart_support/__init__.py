"""Smart-Support: support-ticket triage as a Flask service."""
from __future__ import annotations

from flask import Flask, send_from_directory

__version__ = "1.0.0"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app. `test_config` keys in lower case override settings (e.g. model_dir);
    upper-case keys go to Flask's config."""
    from flask_smorest import Api

    from smart_support import auth, errors
    from smart_support.api import (
        agents, alerts, classify, feedback, health, incidents, instrumentation, schemas, tickets,
    )
    from smart_support.config import Settings
    from smart_support.inference.service import TriageService
    from smart_support.logs import configure_logging

    test_config = dict(test_config or {})
    settings = Settings.from_env(**{k: v for k, v in test_config.items() if k.islower()})
    configure_logging(settings.log_level)

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="Smart-Support",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
    )
    app.json.sort_keys = False
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})

    _one_blas_thread()
    service = TriageService(settings)
    app.extensions["smart_support"] = service
    service.load()
    app.extensions["smart_support_storage"] = _open_storage(settings)
    app.extensions["smart_support_prediction_log"] = _prediction_log(
        settings, app.extensions["smart_support_storage"])
    app.extensions["smart_support_alerts"] = _start_alerts(
        settings, app.extensions["smart_support_storage"])
    app.extensions["smart_support_desk"] = _open_desk(
        settings, service, app.extensions["smart_support_storage"],
        app.extensions["smart_support_alerts"])

    api = Api(app)
    api.register_blueprint(classify.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(feedback.blp)
    api.register_blueprint(alerts.blp)
    api.register_blueprint(tickets.blp)
    api.register_blueprint(agents.blp)
    api.register_blueprint(incidents.blp)
    schemas.document_limits(api.spec, settings,
                            service.artifacts.labels if service.artifacts else None)
    errors.register_error_handlers(app)
    instrumentation.init_app(app)
    auth.init_app(app, settings)
    _serve_docs_assets(app)
    return app


def _open_storage(settings):
    """The feedback and prediction-log store, or None (logged) if it cannot be opened:
    classification keeps working, and /feedback answers 503 rather than losing anything."""
    import logging

    from smart_support.storage import Storage, database_url

    try:
        storage = Storage(database_url(settings.data_dir, settings.database_url))
        storage.migrate()
        return storage
    except Exception:  # noqa: BLE001 - any driver or filesystem fault
        logging.getLogger(__name__).exception("storage unavailable")
        return None


def _prediction_log(settings, storage):
    """The batched writer of /classify answers, or None when there is nothing to log to."""
    if storage is None or not settings.record_predictions:
        return None
    from smart_support.prediction_log import PredictionLog

    return PredictionLog(storage, settings.prediction_log_flush_seconds)


def _start_alerts(settings, storage):
    """The outbox and this process's dispatcher thread, when webhooks are configured."""
    if not settings.webhook_urls:
        return None
    if storage is None:
        raise RuntimeError("SMART_SUPPORT_WEBHOOK_URLS is set but the database is unavailable: "
                           "alerts could not be recorded, so the service refuses to start")
    from smart_support.alerts.dispatcher import Dispatcher
    from smart_support.alerts.outbox import Outbox
    from smart_support.metrics import ALERTS

    outbox = Outbox.from_settings(storage, settings)
    if settings.alert_dispatcher:
        outbox.dispatcher = Dispatcher(outbox, settings.webhook_secret,
                                       settings.alert_timeout_seconds,
                                       on_result=lambda outcome: ALERTS.labels(outcome).inc())
        outbox.dispatcher.start()
    return outbox


def _open_desk(settings, service, storage, outbox):
    """The ticket desk, or None without a database. Storm detection needs its own similarity
    encoder: if that cannot be loaded the service refuses to report ready and says so."""
    from pathlib import Path

    from smart_support.desk.service import Desk
    from smart_support.inference.embedder import Embedder, EmbedderError

    if storage is None:
        return None
    embedder = None
    if settings.storm_enabled and service.ready:
        encoder = storm_encoder_path(settings)
        try:
            embedder = Embedder(encoder, quantize=settings.quantize, runtime=settings.runtime,
                                threads=settings.torch_threads)
        except EmbedderError as exc:
            # the encoder directory's name and the file in it, never the server's full path
            path = Path(exc.path)
            name = (str(encoder.name / path.relative_to(encoder))
                    if encoder and path.is_relative_to(encoder) else path.name)
            service.refuse(f"storm-detection encoder {name} (SMART_SUPPORT_STORM_ENCODER): "
                           f"{exc.reason.split(' (')[0]}", name)
    return Desk(storage, service, settings, outbox, embedder)


def _one_blas_thread() -> None:
    """numpy's OpenBLAS starts threads on every core for a large enough product. Beside a model
    that already has its cores, they wait for each other: measured by hand with
    bench/desk_latency.py, the storm decision's window product (2,000 x 384) took 3-6 ms with
    OpenBLAS threads (2 model threads or more) and 0.2 ms in one. The service's products are
    small, so BLAS runs in one thread and the cores stay the model's."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def storm_encoder_path(settings):
    """SMART_SUPPORT_STORM_ENCODER, else the model directory's export (onnx runtime) or the
    packaged all-MiniLM-L6-v2 (torch runtime, None)."""
    from pathlib import Path

    from smart_support.inference.runtime import ONNX_DIR, STORM_ENCODER_EXPORT

    if settings.storm_encoder:
        return Path(settings.storm_encoder)
    if settings.runtime == "onnx":
        return Path(settings.model_dir) / ONNX_DIR / STORM_ENCODER_EXPORT
    return None


def _serve_docs_assets(app: Flask) -> None:
    """Swagger UI's files from the swagger-ui-bundle package, so /docs works offline."""
    import swagger_ui_bundle

    @app.route("/docs/assets/<path:filename>")
    def docs_assets(filename):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
