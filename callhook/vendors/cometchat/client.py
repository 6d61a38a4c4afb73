"""The CometChat Calls API: Get Call (enrichment) and List Calls (reconcile)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from callhook.errors import NotReadyYet, RetryableError
from callhook.events import EventType
from callhook.http import get_json_object
from callhook.lenient import boolean, number, text, timestamp
from callhook.vendors.base import Fetched, VendorClient
from callhook.vendors.cometchat.config import CometChatSource

TARGET = "cometchat API"
#: List Calls page size (the docs give no maximum; 100 keeps pages small and few)
PAGE_SIZE = 100


class CometChatClient(VendorClient):
    """Calls API requests for one source, on the worker's shared httpx client."""

    def __init__(self, config: CometChatSource, http: httpx.AsyncClient) -> None:
        self._base = config.api_base_url
        self._headers = {
            "apikey": config.api_key.get_secret_value(),
            "accept": "application/json",
        }
        self._http = http

    async def fetch(self, call_id: str, event_type: EventType) -> Fetched:
        """Get Call. Recordings and transcriptions come inside the call object; for a
        recording/transcript event whose call does not show them yet, `NotReadyYet`."""
        # the id comes from a webhook body: quoted so it can only ever name one path segment
        path = "/calls/" + quote(call_id, safe="")
        body = await self._get(path, params=None, not_found_is_late=True)
        call = _unwrap(body, call_id)
        extras: dict[str, Any] = {}
        if isinstance(call.get("recordings"), list):
            extras["recordings"] = call["recordings"]
        if isinstance(call.get("transcriptions"), list):
            extras["transcript"] = call["transcriptions"]
        if event_type is EventType.RECORDING_READY and not _ready(
            call, "hasRecording", extras, "recordings"
        ):
            raise NotReadyYet(f"{TARGET} does not list the call's recording yet", target=TARGET)
        if event_type is EventType.TRANSCRIPT_READY and not _ready(
            call, "hasTranscription", extras, "transcript"
        ):
            raise NotReadyYet(f"{TARGET} does not list the call's transcript yet", target=TARGET)
        return Fetched(call=call, extras=extras)

    async def list_calls(
        self, since: datetime, until: datetime
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every call initiated in [since, until), each once, paging `page`/`perPage`.

        The window goes to the API as `startedAt`/`endedAt` (unix seconds, widened to whole
        seconds) to narrow the listing, and is applied again here on each call's
        `initiatedAt` (else `startedAt`): the docs do not say which call time the API
        filters on. A call seen on an earlier page (pages shift when calls arrive while
        paging) is not yielded twice.
        """
        start, end = _unix(since), _unix(until)
        params = {"startedAt": str(math.floor(start)), "endedAt": str(math.ceil(end))}
        seen: set[str] = set()
        page = 1
        while True:
            body = await self._get(
                "/calls",
                params={**params, "page": str(page), "perPage": str(PAGE_SIZE)},
                not_found_is_late=False,
            )
            calls = body.get("data")
            if not isinstance(calls, list):
                raise RetryableError(f"{TARGET} listed calls without a data array", target=TARGET)
            for call in calls:
                if not isinstance(call, dict):
                    continue
                session_id = text(call.get("sessionId"))
                if session_id is None or session_id in seen:
                    continue
                moment = timestamp(call.get("initiatedAt")) or timestamp(call.get("startedAt"))
                if moment is not None and not start <= moment < end:
                    continue
                seen.add(session_id)
                yield call
            if not calls or page >= _total_pages(body, page, len(calls)):
                return
            page += 1

    async def _get(
        self, path: str, *, params: Mapping[str, str] | None, not_found_is_late: bool
    ) -> dict[str, Any]:
        return await get_json_object(
            self._http,
            self._base + path,
            params=params,
            headers=self._headers,
            target=TARGET,
            not_found_is_late=not_found_is_late,
        )


def _unwrap(body: Mapping[str, Any], call_id: str) -> dict[str, Any]:
    """The call from `{"data": {call}}` (current) or `{"data": [{call}]}` (older export)."""
    data = body.get("data")
    if isinstance(data, list):
        calls = [item for item in data if isinstance(item, dict)]
        if not calls:
            raise NotReadyYet(f"{TARGET} answered an empty call list", target=TARGET)
        data = next((c for c in calls if text(c.get("sessionId")) == call_id), calls[0])
    if not isinstance(data, dict):
        raise RetryableError(f"{TARGET} answered without a call object", target=TARGET)
    if text(data.get("sessionId")) is None:
        raise RetryableError(f"{TARGET} answered a call without sessionId", target=TARGET)
    return data


def _ready(call: Mapping[str, Any], flag: str, extras: Mapping[str, Any], kind: str) -> bool:
    return boolean(call.get(flag)) is not False and bool(extras.get(kind))


def _total_pages(body: Mapping[str, Any], page: int, count: int) -> int:
    """`meta.pagination.total_pages`; without it, another page only after a full one."""
    pagination = (
        body.get("meta", {}).get("pagination") if isinstance(body.get("meta"), dict) else None
    )
    total = number(pagination.get("total_pages")) if isinstance(pagination, dict) else None
    if total is not None and math.isfinite(total):
        return int(total)
    return page + 1 if count >= PAGE_SIZE else page


def _unix(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
