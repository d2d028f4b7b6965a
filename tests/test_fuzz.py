"""Property-based fuzzing of every documented operation from the app's own /openapi.json:
no 5xx, and every response (status, content type, body) matches the documented schema.

schemathesis' pytest plugin does not run under pytest 9, so each operation's hypothesis
strategy is driven directly."""
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

OPERATIONS = [("POST", "/classify"), ("POST", "/classify/batch"), ("GET", "/health"),
              ("GET", "/ready"), ("GET", "/metrics"), ("POST", "/feedback"), ("GET", "/feedback"),
              ("GET", "/alerts"), ("POST", "/alerts/{alert_id}/replay"),
              ("POST", "/tickets"), ("GET", "/tickets"), ("GET", "/tickets/{ticket_id}"),
              ("POST", "/tickets/{ticket_id}/resolve"), ("POST", "/tickets/{ticket_id}/requeue"),
              ("GET", "/queue"), ("POST", "/queue/claim"), ("POST", "/agents"),
              ("GET", "/agents"), ("GET", "/agents/{agent_id}"), ("PATCH", "/agents/{agent_id}"),
              ("GET", "/incidents"), ("GET", "/incidents/{incident_id}"),
              ("POST", "/incidents/{incident_id}/resolve")]
WITH_INPUT = {("POST", "/classify"), ("POST", "/classify/batch"), ("POST", "/feedback"),
              ("GET", "/feedback"), ("GET", "/alerts"), ("POST", "/tickets"), ("GET", "/tickets"),
              ("POST", "/tickets/{ticket_id}/resolve"), ("POST", "/tickets/{ticket_id}/requeue"),
              ("GET", "/queue"), ("POST", "/queue/claim"), ("POST", "/agents"),
              ("GET", "/agents"), ("PATCH", "/agents/{agent_id}"), ("GET", "/incidents"),
              ("POST", "/incidents/{incident_id}/resolve")}


@pytest.fixture(scope="module")
def api_schema(session_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", session_app)


def test_the_fuzzed_list_covers_every_documented_operation(api_schema):
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


# Negative cases (schema-violating input) exist only where there is input to violate.
CASES = ([(m, p, "positive") for m, p in OPERATIONS]
         + [(m, p, "negative") for m, p in OPERATIONS if (m, p) in WITH_INPUT])


@pytest.mark.parametrize("method, path, mode", CASES)
def test_every_operation_keeps_its_documented_contract(api_schema, method, path, mode):
    operation = api_schema[path][method]
    generation_mode = schemathesis.GenerationMode(mode)

    @given(case=operation.as_strategy(generation_mode=generation_mode))
    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate()

    check()
