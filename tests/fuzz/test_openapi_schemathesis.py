"""Schemathesis against GET /openapi.json: every operation, generated requests (positive
and negative), each answer checked against the document with Schemathesis's checks: never
a 5xx, documented status codes, content types, headers and body schemas. The ingress runs
on a real loopback port against the real Redis, with one source per vendor configured; a
second run turns the JSON API on and fuzzes its operations too, with the Bearer token.

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
from schemathesis.checks import ignored_auth
from schemathesis.core.result import Ok

from service.app import create_app
from tests.fuzz.conftest import SECRET_TEXTS, fuzz_config
from tests.servers import ServerThread

EXAMPLES_PER_OPERATION_AND_MODE = 60
#: the API's operations are many and mostly read; fewer examples each keep the run short
API_EXAMPLES_PER_OPERATION_AND_MODE = 25
API_TOKEN = "fuzz-console-token-0123456789abcdef"
#: every route the service answers (docs/architecture.md, docs/api.md), each with its method
EXPECTED_OPERATIONS = {
    "POST /webhooks/{source}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
}


#: the JSON API's, when [console] token is set
EXPECTED_API_OPERATIONS = {
    "GET /api/v1/calls",
    "GET /api/v1/calls/{source}/{call_id}",
    "POST /api/v1/calls/{source}/{call_id}/redeliver",
    "POST /api/v1/calls/{source}/{call_id}/re-enrich",
    "GET /api/v1/dead-letters",
    "POST /api/v1/dead-letters/replay",
    "POST /api/v1/dead-letters/purge",
    "GET /api/v1/overview",
    "GET /api/v1/health",
    "GET /api/v1/rejections",
}


@pytest.fixture
def ingress_url(redis_server_url: str, redis_namespace: str) -> Iterator[str]:
    config = fuzz_config(redis_server_url, redis_namespace)
    with ServerThread(create_app(config), lifespan=True) as server:
        yield server.url


@pytest.fixture
def api_ingress_url(redis_server_url: str, redis_namespace: str) -> Iterator[str]:
    config = fuzz_config(redis_server_url, redis_namespace, console_token=API_TOKEN)
    with ServerThread(create_app(config), lifespan=True) as server:
        yield server.url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_document(ingress_url: str, mode: GenerationMode) -> None:
    fuzz_operations(ingress_url, mode, EXPECTED_OPERATIONS, EXAMPLES_PER_OPERATION_AND_MODE)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_api_operation_conforms_to_the_document(
    api_ingress_url: str, mode: GenerationMode
) -> None:
    fuzz_operations(
        api_ingress_url,
        mode,
        EXPECTED_OPERATIONS | EXPECTED_API_OPERATIONS,
        API_EXAMPLES_PER_OPERATION_AND_MODE,
        only=EXPECTED_API_OPERATIONS,
        headers={"authorization": f"Bearer {API_TOKEN}"},
    )


def fuzz_operations(
    ingress_url: str,
    mode: GenerationMode,
    expected: set[str],
    examples: int,
    *,
    only: set[str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    # from_dict, not from_url: from_url leaves out the document's own operation
    document = httpx.get(f"{ingress_url}/openapi.json", timeout=5).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [_operation(result) for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == expected
    if only is not None:
        operations = [op for op in operations if f"{op.method.upper()} {op.path}" in only]
    calls = 0
    for operation in operations:
        described = document["paths"][operation.path][operation.method]
        nothing_to_break = "parameters" not in described and "requestBody" not in described
        if mode is GenerationMode.NEGATIVE and nothing_to_break:
            continue  # no parameters and no body: no request can be wrong

        @settings(
            max_examples=examples,
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
            if mode is GenerationMode.POSITIVE and case.query:
                # a cursor is opaque: only one the API handed out is valid (test_api.py)
                case.query.pop("cursor", None)
            # A negative case may carry a broken Authorization of its own: it keeps it.
            # Schemathesis's own auth check takes the token given here for one it made up
            # and wants a 401; tests/service/test_api.py refuses wrong tokens on every route
            own = {name.lower() for name in (case.headers or {})}
            extra = {k: v for k, v in (headers or {}).items() if k.lower() not in own}
            response = case.call_and_validate(
                base_url=ingress_url,
                timeout=5,
                headers=extra,
                excluded_checks=[ignored_auth] if headers else None,
            )
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
