"""The Quo (OpenPhone) REST API: Get Call and its extras (enrichment), List Calls (reconcile).

Requests carry `Authorization: <API key>` (no `Bearer`); the key never appears in an error.
Quo allows 10 requests/second per key; the worker's transport applies the source's
fleet-wide `rate_limit_per_s` to every request made here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx

from callhook.errors import NotReadyYet, PermanentError, RetryableError
from callhook.events import EventType
from callhook.http import VENDOR_DEADLINE_S, get_json_object
from callhook.lenient import text
from callhook.vendors.base import Fetched, VendorClient
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.fields import ready
from callhook.vendors.openphone.listing import ListCalls
from callhook.vendors.openphone.webhook import CALL_ID

TARGET = "openphone API"

#: the extras each event type calls for, after Get Call: (kind, path, required). A required
#: extra that is missing or unfinished makes the fetch `NotReadyYet`; an optional one is
#: noted in `Fetched.notes` and the call is recorded without it.
EXTRAS: Mapping[EventType, tuple[tuple[str, str, bool], ...]] = MappingProxyType(
    {
        EventType.COMPLETED: (("recordings", "/v1/call-recordings/", False),),
        EventType.RECORDING_READY: (("recordings", "/v1/call-recordings/", True),),
        EventType.SUMMARY_READY: (("summary", "/v1/call-summaries/", True),),
        EventType.TRANSCRIPT_READY: (("transcript", "/v1/call-transcripts/", True),),
        EventType.VOICEMAIL_READY: (("voicemail", "/v1/call-voicemails/", True),),
    }
)

#: AI extras a plan may not include: a 403 is recorded, not raised
_PLAN_GATED = frozenset({"summary", "transcript"})


class OpenPhoneClient(VendorClient):
    """Quo API requests for one source, on the worker's shared httpx client."""

    def __init__(
        self,
        config: OpenPhoneSource,
        http: httpx.AsyncClient,
        *,
        deadline_s: float = VENDOR_DEADLINE_S,
    ) -> None:
        self._config = config
        self._base = config.api_base_url
        self._headers = {
            "authorization": config.api_key.get_secret_value(),
            "accept": "application/json",
        }
        self._http = http
        self._deadline_s = deadline_s
        #: what the last `list_calls` could not cover (read by reconcile after listing)
        self.coverage_notes: list[str] = []

    async def fetch(self, call_id: str, event_type: EventType) -> Fetched:
        """Get Call, then the extras the event type calls for (see `EXTRAS`).
        `PermanentError` for an id that is not a Quo call id (it never becomes a URL)."""
        segment = CALL_ID.path_segment(call_id, target=TARGET)
        body = await self.get(f"/v1/calls/{segment}", params=None, not_found_is_late=True)
        call = body.get("data")
        if not isinstance(call, dict) or text(call.get("id")) is None:
            raise RetryableError(f"{TARGET} answered without a call object", target=TARGET)
        extras: dict[str, Any] = {}
        notes: dict[str, str] = {}
        for kind, path, required in EXTRAS.get(event_type, ()):
            try:
                extras[kind] = await self._extra(kind, path + segment, required=required)
            except _Unavailable as exc:
                notes[kind] = str(exc)
            except PermanentError as exc:
                # a 403 on an optional extra, or on an AI extra the plan lacks, is not the
                # call's fault: record the call without it
                if exc.status_code != 403 or (required and kind not in _PLAN_GATED):
                    raise
                notes[kind] = _note(exc)
            except NotReadyYet as exc:
                if required:
                    raise
                notes[kind] = exc.reason
        return Fetched(call=call, extras=extras, notes=notes)

    async def _extra(self, kind: str, path: str, *, required: bool) -> Any:
        """One extra's `data`; `NotReadyYet` while Quo is still producing it."""
        body = await self.get(path, params=None, not_found_is_late=True)
        data = body.get("data")
        if kind == "recordings":
            if not isinstance(data, list):
                raise RetryableError(
                    f"{TARGET} listed recordings without a data array", target=TARGET
                )
            if required and not any(isinstance(r, dict) and text(r.get("url")) for r in data):
                raise NotReadyYet(f"{TARGET} lists no finished recording yet", target=TARGET)
            return data
        if not isinstance(data, dict):
            raise RetryableError(f"{TARGET} answered a {kind} without a data object", target=TARGET)
        status = (text(data.get("status")) or "").lower()
        if status == "failed":
            raise _Unavailable(f"{kind} failed at Quo")
        if ready(data) is False:
            raise NotReadyYet(f"{TARGET} {kind} is {status or 'not ready'} yet", target=TARGET)
        return data

    def list_calls(self, since: datetime, until: datetime) -> AsyncIterator[Mapping[str, Any]]:
        """Every call created in [since, until), each once.

        List Calls needs one workspace number and one counterparty per query, so this walks
        the numbers (`phone_number_ids`, else GET /v1/phone-numbers) and each number's
        counterparties (`participants`, else the conversations active since `since`) and
        pages through each pair. Cost: 1 + per number (conversation pages + per
        counterparty at least one page) requests; see docs/vendors/openphone.md.
        """
        self.coverage_notes = []
        listing = ListCalls(self.get, self._config, target=TARGET, notes=self.coverage_notes)
        return listing.calls(_utc(since), _utc(until))

    async def get(
        self, path: str, *, params: Mapping[str, Any] | None, not_found_is_late: bool
    ) -> dict[str, Any]:
        """GET a JSON object from the API; errors classified as `callhook.errors` says."""
        return await get_json_object(
            self._http,
            self._base + path,
            params=params,
            headers=self._headers,
            target=TARGET,
            not_found_is_late=not_found_is_late,
            deadline_s=self._deadline_s,
        )


class _Unavailable(Exception):
    """An extra Quo will never produce for this call (e.g. a failed summary)."""


def _note(exc: PermanentError) -> str:
    return f"forbidden: the plan or key does not include this ({exc.reason})"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
