"""The Diga API: Get Call and the call's messages (enrichment), List Calls (reconcile)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from callhook.errors import NotReadyYet, PermanentError, RetryableError
from callhook.events import EventType
from callhook.http import VENDOR_DEADLINE_S, get_json_object
from callhook.lenient import boolean, text, timestamp
from callhook.record import iso_z
from callhook.vendors.base import Fetched, VendorClient
from callhook.vendors.diga.config import DigaSource, reveal
from callhook.vendors.diga.webhook import CALL_ID
from callhook.vendors.ids import ListedIds

TARGET = "diga API"
#: List Calls and messages page size (the API allows 1..1000)
PAGE_SIZE = 100
#: a call's messages are read to at most this many pages (10,000 messages at the default
#: page size, far beyond any call): an API that always has more cannot hold a worker
MAX_MESSAGE_PAGES = 100

#: events after which the call's conversation is worth fetching (a no-answer has none)
_TRANSCRIPT_EVENTS = frozenset({EventType.COMPLETED, EventType.FAILED})
#: events that say the call is over, so Get Call must not still show it live
_FINISHED_EVENTS = frozenset({EventType.COMPLETED, EventType.MISSED, EventType.FAILED})
_LIVE_STATUSES = frozenset({"dialing", "in_progress"})


class DigaClient(VendorClient):
    """Diga API requests for one source, on the worker's shared httpx client."""

    def __init__(
        self,
        config: DigaSource,
        http: httpx.AsyncClient,
        *,
        page_size: int = PAGE_SIZE,
        deadline_s: float = VENDOR_DEADLINE_S,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be within 1..1000")
        self._base = config.api_base_url
        self._headers = {
            "authorization": f"Bearer {reveal(config.api_key)}",
            "accept": "application/json",
        }
        self._http = http
        self._page_size = page_size
        self._deadline_s = deadline_s
        #: what the last `list_calls` could not cover (read by reconcile after listing)
        self.coverage_notes: list[str] = []

    async def fetch(self, call_id: str, event_type: EventType) -> Fetched:
        """Get Call; after a completed or failed call also every page of its messages
        (`extras["transcript"]`, oldest first; a 403/404 there becomes a note).

        `NotReadyYet` on a 404, and when Get Call still shows a finished call as dialing
        or in progress (the API has not caught up with the workflow yet). `PermanentError`
        for an id that is not a UUID (it never becomes a URL), and for messages that go on
        past `MAX_MESSAGE_PAGES` pages.
        """
        path = "/v1/call/" + CALL_ID.path_segment(call_id, target=TARGET)
        call = await self._get(path, params=None, not_found_is_late=True)
        if text(call.get("id")) is None:
            raise RetryableError(f"{TARGET} answered a call without id", target=TARGET)
        status = (text(call.get("status")) or "").lower()
        if event_type in _FINISHED_EVENTS and status in _LIVE_STATUSES:
            raise NotReadyYet(f"{TARGET} still shows the call as {status}", target=TARGET)
        if event_type not in _TRANSCRIPT_EVENTS:
            return Fetched(call=call)
        try:
            pages = self._pages(path + "/message", {}, max_pages=MAX_MESSAGE_PAGES)
            messages = [item async for item in pages]
        except PermanentError as exc:
            if exc.status_code not in (403, 404):
                raise
            # the call itself is here: a key without transcript access, or a call without
            # messages, still enriches it (the workflow body carries the messages too)
            return Fetched(call=call, notes={"transcript": exc.reason})
        return Fetched(call=call, extras={"transcript": messages})

    async def list_calls(
        self, since: datetime, until: datetime
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every call created in [since, until), each once, oldest first.

        The window goes to the API as `start_created_date`/`end_created_date` and is
        applied again here on each call's `created_date` (half-open, so adjacent windows
        never share a call). Pages follow the `after=<last_id>` cursor while `has_more`;
        `before` is never sent (the API refuses both cursors together). A call whose id is
        not a UUID is skipped.
        """
        self.coverage_notes = []
        ids = ListedIds(CALL_ID, target=TARGET, notes=self.coverage_notes)
        start, end = _utc(since), _utc(until)
        # full precision ("auto": whole seconds as Diga writes them, else microseconds): a
        # window the API applies must not be narrower than the one applied below
        window = {
            "start_created_date": iso_z(start, timespec="auto"),
            "end_created_date": iso_z(end, timespec="auto"),
        }
        seen: set[str] = set()
        async for call in self._pages("/v1/call/", window):
            call_id = text(call.get("id"))
            if call_id is None or call_id in seen or not ids.usable(call_id):
                continue
            created = timestamp(call.get("created_date"))
            if created is not None and not start.timestamp() <= created < end.timestamp():
                continue
            seen.add(call_id)
            yield call

    async def _pages(
        self, path: str, filters: Mapping[str, str], *, max_pages: int | None = None
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every item of a cursor-paged listing, ascending, following `after` while
        `has_more` (to `max_pages` pages at most, when given: past it, `PermanentError`).
        A 404 here is not "late": the call was found a moment before."""
        cursor: str | None = None
        read = 0
        while True:
            if max_pages is not None and read >= max_pages:
                raise PermanentError(
                    f"{TARGET} still had more after {max_pages} pages of {path}", target=TARGET
                )
            read += 1
            params = {**filters, "limit": str(self._page_size), "order": "asc"}
            if cursor is not None:
                params["after"] = cursor
            body = await self._get(path, params=params, not_found_is_late=False)
            items = body.get("data")
            if not isinstance(items, list):
                raise RetryableError(f"{TARGET} listed without a data array", target=TARGET)
            objects = [item for item in items if isinstance(item, Mapping)]
            for item in objects:
                yield item
            if boolean(body.get("has_more")) is not True or not objects:
                return
            following = text(body.get("last_id")) or _last_id(objects)
            if following is None or following == cursor:
                raise RetryableError(
                    f"{TARGET} said it has more but gave no new cursor", target=TARGET
                )
            cursor = following

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


def _last_id(items: list[Mapping[str, Any]]) -> str | None:
    last = items[-1]
    return text(last.get("id")) or text(last.get("message_id"))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
