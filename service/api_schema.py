"""The JSON API's part of /openapi.json (service/api.py; docs/api.md has the prose)."""

from __future__ import annotations

from typing import Any

from callhook.record import CallStatus

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT: dict[str, Any] = {"type": "object"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or _OBJECT}},
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


SOURCE_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
SINK_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
_CALL_PARAMETERS = [
    {"name": "source", "in": "path", "required": True, "schema": SOURCE_NAME},
    {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}},
]
_REFUSALS = {
    "400": _answer("a query or body the API cannot use", _ERROR),
    "401": _answer("missing or wrong token; nothing read or changed", _ERROR),
}
_NAME = {"type": "string", "minLength": 1}
_SELECTION = {
    "type": "object",
    "description": "ids, or a filter, or all: true; dry_run only counts",
    "additionalProperties": False,
    "properties": {
        "ids": {"type": "array", "items": {"type": "string"}},
        "stage": {"type": "string", "enum": ["enrich", "deliver"]},
        "sink": SINK_NAME,
        "source": SOURCE_NAME,
        "reason_class": _NAME,
        "all": {"type": "boolean"},
        "dry_run": {"type": "boolean"},
    },
    "anyOf": [
        {"required": ["ids"]},
        {"required": ["stage"]},
        {"required": ["sink"]},
        {"required": ["source"]},
        {"required": ["reason_class"]},
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ],
}


def _operation(operation_id: str, summary: str, **fields: Any) -> dict[str, Any]:
    responses = {**fields.pop("responses"), **_REFUSALS}
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": responses,
        **fields,
    }


API_PATHS: dict[str, Any] = {
    "/api/v1/calls": {
        "get": _operation(
            "listCalls",
            "Calls newest first (by first seen), filtered and paged; q finds by id or event key",
            parameters=[
                _query("source", "only this source", SOURCE_NAME),
                _query(
                    "status",
                    "only calls with this record status",
                    {"type": "string", "enum": [status.value for status in CallStatus]},
                ),
                _query(
                    "failed",
                    "true: only calls with a failed attempt; false: only those without",
                    {"type": "string", "enum": ["true", "false"]},
                ),
                _query(
                    "since",
                    "first seen at or after (ISO-8601; UTC without an offset)",
                    {"type": "string", "format": "date-time"},
                ),
                _query(
                    "until",
                    "first seen at or before (ISO-8601; UTC without an offset)",
                    {"type": "string", "format": "date-time"},
                ),
                _query("cursor", "next_cursor of the previous page, as handed out (else 400)"),
                _query(
                    "limit",
                    "calls per page (default 50)",
                    {"type": "integer", "minimum": 1, "maximum": 200},
                ),
                _query("q", "a call id or an event key (the whole of it)"),
            ],
            responses={"200": _answer("{calls: [...], next_cursor}")},
        )
    },
    "/api/v1/calls/{source}/{call_id}": {
        "get": _operation(
            "getCall",
            "The merged record, its journal, each sink's state and attempts, its dead letters",
            parameters=_CALL_PARAMETERS,
            responses={
                "200": _answer("the call"),
                "404": _answer("neither journaled nor stored", _ERROR),
            },
        )
    },
    "/api/v1/calls/{source}/{call_id}/redeliver": {
        "post": _operation(
            "redeliverCall",
            "Deliver the stored record again (to sinks, default: those its last event routes to)",
            parameters=_CALL_PARAMETERS,
            requestBody={
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"sinks": {"type": "array", "items": SINK_NAME}},
                        }
                    }
                },
            },
            responses={
                "202": _answer("enqueued: {status, sinks}"),
                "404": _answer("no record of this call is stored", _ERROR),
            },
        )
    },
    "/api/v1/calls/{source}/{call_id}/re-enrich": {
        "post": _operation(
            "reEnrichCall",
            "Fetch the call from the vendor again, merge, and deliver the result",
            parameters=_CALL_PARAMETERS,
            responses={
                "202": _answer("enqueued"),
                "404": _answer("no record of this call is stored", _ERROR),
            },
        )
    },
    "/api/v1/dead-letters": {
        "get": _operation(
            "listDeadLetters",
            "Dead letters newest first, and grouped as issues (stage, sink, reason class)",
            parameters=[
                _query(
                    "stage", "enrich or deliver", {"type": "string", "enum": ["enrich", "deliver"]}
                ),
                _query("sink", "only this sink's", SINK_NAME),
                _query("source", "only this source's", SOURCE_NAME),
            ],
            responses={"200": _answer("{dead_letters, groups, dropped}")},
        )
    },
    "/api/v1/dead-letters/replay": {
        "post": _operation(
            "replayDeadLetters",
            "Put dead letters back on their queue (each once)",
            requestBody={"required": True, "content": {"application/json": {"schema": _SELECTION}}},
            responses={"200": _answer("{matched, replayed}")},
        )
    },
    "/api/v1/dead-letters/purge": {
        "post": _operation(
            "purgeDeadLetters",
            "Delete dead letters for good",
            requestBody={"required": True, "content": {"application/json": {"schema": _SELECTION}}},
            responses={"200": _answer("{matched, purged}")},
        )
    },
    "/api/v1/overview": {
        "get": _operation(
            "overview",
            "Per source and sink counts over the last hour, queue depths, dead letters",
            responses={"200": _answer("the overview")},
        )
    },
    "/api/v1/health": {
        "get": _operation(
            "health",
            "The redacted configuration; each source's and sink's last success and error",
            responses={"200": _answer("sources, sinks and config")},
        )
    },
    "/api/v1/rejections": {
        "get": _operation(
            "rejections",
            "Rejected deliveries per source: counts by code and the newest 100",
            responses={"200": _answer("per source")},
        )
    },
}

API_COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "[console] token from the config",
        }
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["status", "detail"],
            "properties": {"status": {"const": "error"}, "detail": {"type": "string"}},
        }
    },
}
