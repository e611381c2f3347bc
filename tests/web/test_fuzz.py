"""The API fuzzed from its own OpenAPI document: no server errors, every response as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from scheduler.model import JobSpec
from scheduler.store import Store
from scheduler.web.app import create_app
from tests.helpers import trigger
from tests.web.conftest import record

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture()
def api_schema(store: Store, specs: dict[str, JobSpec]) -> Any:
    now = datetime.now(UTC)
    record(
        store,
        "demo.tick@1",
        "demo.tick",
        now - timedelta(minutes=5),
        "completed",
        duration_s=0.5,
        exit_code=0,
        result={"rows": [1, 2]},
        output="ok\n",
    )
    record(
        store,
        "demo.tick@2",
        "demo.tick",
        now - timedelta(minutes=10),
        "failed",
        exit_code=1,
        error={"type": "E", "message": "<b>", "traceback": "..."},
    )
    trigger(store, "demo.poll")
    store.heartbeat("host-a:1", 30.0, info={"host": "host-a", "pid": 1, "queues": "default"})
    app = create_app(store, specs, allowed_hosts={"testserver"})
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


# schemathesis' pytest plugin does not work with this pytest; its Python API does.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_matches_its_openapi_document(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 6
    if mode is GenerationMode.NEGATIVE:
        # Only query parameters can be invalid: a path parameter is any string.
        operations = [op for op in operations if len(op.query)]
        assert len(operations) == 2
    for operation in operations:

        @given(operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
