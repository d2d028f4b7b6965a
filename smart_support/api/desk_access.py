"""What the desk's views share: the desk of this app, and one translation of its failures into
the standard error shape (DeskError -> its status, model not ready or database down -> 503)."""
from __future__ import annotations

import contextlib

from flask import current_app
from flask_smorest import abort
from sqlalchemy.exc import SQLAlchemyError

from smart_support.desk.service import DeskError
from smart_support.inference.service import NotReady


def desk():
    found = current_app.extensions.get("smart_support_desk")
    if found is None:
        abort(503, message="The ticket desk is not available: its database could not be "
                           "opened (see the server log).")
    return found


@contextlib.contextmanager
def answering_errors(action: str):
    """Run a desk call; `action` names what was not done when the database fails."""
    try:
        yield
    except DeskError as exc:
        abort(exc.status, message=exc.message, errors=exc.errors)
    except NotReady as exc:
        abort(503, message=f"The model is not ready: {exc.reason}")
    except SQLAlchemyError:
        current_app.logger.exception("desk storage failed")
        abort(503, message=f"The database is unavailable: {action}.")
