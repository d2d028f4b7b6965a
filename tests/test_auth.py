"""Optional API keys: 401 in the standard error shape, open routes stay open."""
import pytest

from smart_support import create_app
from smart_support.auth import key_is_valid

KEY = "k" * 20
OTHER = "o" * 24


@pytest.fixture
def locked(trained_model_dir):
    return create_app({"model_dir": trained_model_dir, "api_keys": (KEY, OTHER)}).test_client()


def test_a_request_without_a_key_is_a_401(locked):
    response = locked.post("/classify", json={"description": "hi"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.get_json()
    assert body["code"] == 401 and body["message"]


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"},
                                     {"Authorization": f"bearer {OTHER}"},
                                     {"X-API-Key": KEY}])
def test_a_valid_key_in_either_header_is_accepted(locked, headers):
    assert locked.post("/classify", json={"description": "hi"}, headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong-key-wrong-key"},
                                     {"Authorization": f"Basic {KEY}"},
                                     {"X-API-Key": KEY[:-1]}, {"X-API-Key": ""}])
def test_a_wrong_key_is_a_401(locked, headers):
    assert locked.post("/classify", json={"description": "hi"}, headers=headers).status_code == 401


def test_open_routes_need_no_key_and_unknown_routes_do(locked):
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert locked.get(path).status_code == 200, path
    assert locked.get("/not-a-route").status_code == 401


def test_without_keys_configured_everything_is_open(client):
    assert client.post("/classify", json={"description": "hi"}).status_code == 200


def test_key_comparison_checks_every_key():
    assert key_is_valid(OTHER, (KEY, OTHER))
    assert not key_is_valid(None, (KEY,))
    assert not key_is_valid(KEY + "x", (KEY,))


def test_short_keys_are_refused_at_start_up():
    from smart_support.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="API_KEYS"):
        Settings.from_env({"SMART_SUPPORT_API_KEYS": "short"})
