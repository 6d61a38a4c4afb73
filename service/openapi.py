"""GET /openapi.json: the OpenAPI 3.1 description of the ingress routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import callhook
from service.api_schema import API_COMPONENTS, API_PATHS

_ANSWER = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string"},
        "detail": {"type": "string"},
        "event_key": {"type": "string"},
        "redis_primary": {"type": "string", "description": "/readyz: the Redis primary"},
    },
}


def _json(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}},
    }


def document(source_names: list[str], *, api: bool = False) -> dict[str, Any]:
    """The description of the ingress's routes; with `api`, of the JSON API's too."""
    described = ingress_document(source_names)
    if api:
        described["paths"].update(API_PATHS)
        described["components"]["securitySchemes"] = API_COMPONENTS["securitySchemes"]
        described["components"]["schemas"].update(API_COMPONENTS["schemas"])
    return described


def ingress_document(source_names: list[str]) -> dict[str, Any]:
    source_schema: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    if source_names:
        source_schema["examples"] = source_names
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Callhook ingress",
            "version": callhook.__version__,
            "description": "Webhook target for calling platforms. Vendors POST call events "
            "to /webhooks/{source}; a 200 means the event is durably queued.",
        },
        "paths": {
            "/webhooks/{source}": {
                "post": {
                    "operationId": "receiveWebhook",
                    "summary": "A vendor delivery for a configured source",
                    "parameters": [
                        {"name": "source", "in": "path", "required": True, "schema": source_schema}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _json("accepted, duplicate, or ignored (not a call event)"),
                        "400": _json("not JSON, not an object, or no call identity"),
                        "401": _json("missing or wrong credentials, signature or timestamp"),
                        "404": _json("unknown source"),
                        "408": _json("body not received within ingress.body_timeout_s"),
                        "413": _json("body over ingress.max_body_bytes"),
                        "431": {
                            "description": "request line and headers over "
                            "ingress.max_header_bytes (plain text, from the server)"
                        },
                        "503": {
                            **_json(
                                "Redis did not confirm the write: retry later (or, as plain "
                                "text without Retry-After, ingress.max_connections reached)"
                            ),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "responses": {"200": _json("the process runs")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "responses": {
                        "200": _json("the Redis primary answers (`redis_primary`: its host:port)"),
                        "503": _json("Redis does not answer"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "this document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": {"Answer": _ANSWER}},
    }


async def openapi_endpoint(request: Request) -> Response:
    state = request.app.state.callhook
    return JSONResponse(document(sorted(state.routes), api=state.config.console.enabled))
