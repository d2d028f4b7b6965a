"""End to end: gunicorn with the repo's gunicorn.conf.py on a free 127.0.0.1 port, over HTTP."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def gunicorn(model_dir: Path, workdir: Path, **settings):
    """gunicorn with the repo's gunicorn.conf.py on a free port; yields (base URL, process)."""
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2",
           "SMART_SUPPORT_MODEL_DIR": str(model_dir),
           "SMART_SUPPORT_DATA_DIR": str(workdir / "var"),
           "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom"),
           "SMART_SUPPORT_ACCESS_LOG": "-",
           **{f"SMART_SUPPORT_{k.upper()}": str(v) for k, v in settings.items()}}
    (workdir / "prom").mkdir(parents=True, exist_ok=True)
    log = open(workdir / "gunicorn.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                "wsgi:app"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited early:\n{log.read()}")
            try:
                if call(base + "/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"gunicorn not ready in 60 s:\n{log.read()}")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:  # a test may have stopped it already
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    with gunicorn(trained_model_dir, tmp_path_factory.mktemp("e2e")) as (base, _):
        yield base


def test_classify_over_http(server):
    status, text = call(server + "/classify", {"subject": "Payment deducted twice",
                                               "description": "Money was charged but order failed"})
    assert status == 200
    body = json.loads(text)
    assert body["category"] in body["scores"]
    assert 0 <= body["urgency_score"] <= 1


def test_errors_over_http_keep_the_shape(server):
    status, text = call(server + "/classify", b"{oops")
    assert status == 400 and json.loads(text)["code"] == 400
    status, text = call(server + "/classify", {"description": ""})
    assert status == 422 and "description" in json.loads(text)["errors"]


def test_metrics_sum_over_every_worker(server):
    for _ in range(6):
        assert call(server + "/classify", {"description": "login error today"})[0] == 200
    status, text = call(server + "/metrics")
    assert status == 200
    line = next(l for l in text.splitlines()
                if l.startswith("smart_support_http_requests_total")
                and 'endpoint="/classify"' in l and 'status="200"' in l)
    assert float(line.rsplit(" ", 1)[1]) >= 6


def test_a_stopped_server_writes_the_prediction_log_it_was_holding(trained_model_dir, tmp_path):
    # a flush interval far longer than the test: only the workers' exit can write these rows
    with gunicorn(trained_model_dir, tmp_path, prediction_log_flush_seconds=10) as (base, process):
        for number in range(8):
            body = {"ticket_id": f"T-{number}", "description": "the export button crashes"}
            assert call(base + "/classify", body)[0] == 200
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    database = sqlite3.connect(tmp_path / "var" / "smart_support.db")
    logged = {r[0] for r in database.execute("SELECT ticket_id FROM predictions")}
    database.close()
    assert logged == {f"T-{number}" for number in range(8)}


def test_a_correction_finds_a_ticket_classified_by_the_other_worker(trained_model_dir, tmp_path):
    with gunicorn(trained_model_dir, tmp_path) as (base, _):
        for number in range(6):  # sync workers: these land on both of them
            body = {"ticket_id": f"T-{number}", "description": f"login fails on laptop {number}"}
            status, text = call(base + "/classify", body)
            assert status == 200
            # no text is sent: a 201 means the logged ticket was found, whichever worker had it
            status, record = call(base + "/feedback", {"ticket_id": f"T-{number}",
                                                       "category": "Technical"})
            assert status == 201, record
            assert json.loads(record)["predicted_category"] == json.loads(text)["category"]


def test_an_empty_access_log_setting_turns_the_access_log_off(trained_model_dir, tmp_path):
    # behind nginx, whose own access log has every request: SMART_SUPPORT_ACCESS_LOG= (empty)
    with gunicorn(trained_model_dir, tmp_path, access_log="") as (base, _):
        assert call(base + "/classify", {"description": "the export button crashes"})[0] == 200
    server_log = (tmp_path / "gunicorn.log").read_text()
    assert "Booting worker" in server_log
    assert '"request": "POST /classify' not in server_log


def test_the_access_log_has_one_json_line_per_request_whatever_the_user_agent(
        trained_model_dir, tmp_path):
    agent = 'tool "quoted" C:\\path\\bin'  # gunicorn's own escaping made this invalid JSON
    with gunicorn(trained_model_dir, tmp_path) as (base, _):
        request = urllib.request.Request(
            base + "/classify?explain=false", data=b'{"description": "the export button crashes"}',
            headers={"Content-Type": "application/json", "User-Agent": agent})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            sent = len(response.read())
        assert call(base + "/classify", b"{oops")[0] == 400
    lines = [line for line in (tmp_path / "gunicorn.log").read_text().splitlines()
             if "POST /classify" in line]
    assert len(lines) == 2
    answered, refused = (json.loads(line) for line in lines)
    assert answered["request"] == "POST /classify?explain=false HTTP/1.1"
    assert answered["status"] == 200 and answered["agent"] == agent
    assert answered["bytes"] >= sent and answered["duration_ms"] >= 0
    assert answered["remote"] == "127.0.0.1"
    assert refused["status"] == 400
