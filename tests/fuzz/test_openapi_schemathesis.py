"""Schemathesis against GET /openapi.json: every operation, generated requests (positive
and negative), each answer checked against the document with Schemathesis's checks: never
a 5xx, documented status codes, content types, headers and body schemas. The ingress runs
on a real loopback port against the real Redis, with one source per vendor configured.

(`schemathesis.pytest.from_fixture` does not work with pytest 9, so each operation's
strategy is driven by Hypothesis here, inside one test.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from service.app import create_app
from tests.fuzz.conftest import SECRET_TEXTS, fuzz_config
from tests.servers import ServerThread

EXAMPLES_PER_OPERATION_AND_MODE = 60
#: every route SPEC section 3 lists, each documented with its method
EXPECTED_OPERATIONS = {
    "POST /webhooks/{source}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
}


@pytest.fixture
def ingress_url(redis_server_url: str, redis_namespace: str) -> Iterator[str]:
    config = fuzz_config(redis_server_url, redis_namespace)
    with ServerThread(create_app(config), lifespan=True) as server:
        yield server.url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_document(ingress_url: str, mode: GenerationMode) -> None:
    # from_dict, not from_url: from_url leaves out the document's own operation
    document = httpx.get(f"{ingress_url}/openapi.json", timeout=5).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [_operation(result) for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == EXPECTED_OPERATIONS
    calls = 0
    for operation in operations:
        described = document["paths"][operation.path][operation.method]
        nothing_to_break = "parameters" not in described and "requestBody" not in described
        if mode is GenerationMode.NEGATIVE and nothing_to_break:
            continue  # no parameters and no body: no request can be wrong

        @settings(
            max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.explicit, Phase.generate),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Case[Any]) -> None:
            nonlocal calls
            calls += 1
            response = case.call_and_validate(base_url=ingress_url, timeout=5)
            shown = response.text + "".join(f"{k}: {v}" for k, v in response.headers.items())
            for secret in SECRET_TEXTS:
                assert secret not in shown

        run()
    assert calls >= len(operations)


def _operation(result: Any) -> APIOperation[Any, Any, Any, Any]:
    """The operation, or a failure naming why Schemathesis could not read it."""
    assert isinstance(result, Ok), f"the document has an invalid operation: {result.err()}"
    operation: APIOperation[Any, Any, Any, Any] = result.ok()
    return operation
