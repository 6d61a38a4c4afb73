"""The CometChat Calls API: Get Call (enrichment) and List Calls (reconcile)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from callhook.errors import NotReadyYet, RetryableError
from callhook.events import EventType
from callhook.http import VENDOR_DEADLINE_S, get_json_object
from callhook.lenient import boolean, number, text, timestamp
from callhook.vendors.base import Fetched, VendorClient
from callhook.vendors.cometchat.config import CometChatSource
from callhook.vendors.cometchat.webhook import SESSION_ID
from callhook.vendors.ids import ListedIds

TARGET = "cometchat API"
#: List Calls page size (the docs give no maximum; 100 keeps pages small and few)
PAGE_SIZE = 100


class CometChatClient(VendorClient):
    """Calls API requests for one source, on the worker's shared httpx client."""

    def __init__(
        self,
        config: CometChatSource,
        http: httpx.AsyncClient,
        *,
        deadline_s: float = VENDOR_DEADLINE_S,
    ) -> None:
        self._base = config.api_base_url
        self._headers = {
            "apikey": config.api_key.get_secret_value(),
            "accept": "application/json",
        }
        self._http = http
        self._deadline_s = deadline_s
        #: what the last `list_calls` could not cover (read by reconcile after listing)
        self.coverage_notes: list[str] = []

    async def fetch(self, call_id: str, event_type: EventType) -> Fetched:
        """Get Call. Recordings and transcriptions come inside the call object; for a
        recording/transcript event whose call does not show them yet, `NotReadyYet`.
        `PermanentError` for an id that is not a session id (it never becomes a URL)."""
        path = "/calls/" + SESSION_ID.path_segment(call_id, target=TARGET)
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
        paging) is not yielded twice; one whose id is not a session id is skipped. A page
        that lists exactly the calls of the page before (the API ignoring `page`) is a
        `RetryableError`, not the start of an endless walk.
        """
        self.coverage_notes = []
        ids = ListedIds(SESSION_ID, target=TARGET, notes=self.coverage_notes)
        start, end = _unix(since), _unix(until)
        params = {"startedAt": str(math.floor(start)), "endedAt": str(math.ceil(end))}
        seen: set[str] = set()
        previous: list[str | None] = []
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
            listed = [text(call.get("sessionId")) for call in calls if isinstance(call, dict)]
            if listed and listed == previous:
                raise RetryableError(
                    f"{TARGET} answered page {page} with the calls of page {page - 1} again",
                    target=TARGET,
                )
            previous = listed
            for call in calls:
                if not isinstance(call, dict):
                    continue
                session_id = text(call.get("sessionId"))
                if session_id is None or session_id in seen or not ids.usable(session_id):
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
            deadline_s=self._deadline_s,
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
