"""List Calls for reconcile, and the fan-out it needs.

Quo's `GET /v1/calls` answers for one workspace number (`phoneNumberId`) and exactly one
counterparty (`participants`) at a time, token-paged by `nextPageToken`. Reconciling a
window therefore means: the workspace numbers (configured `phone_number_ids`, else
`GET /v1/phone-numbers`), for each the counterparties (configured `participants`, else the
numbers of the conversations updated since the window began, `GET /v1/conversations`),
and one paged listing per (number, counterparty) pair.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from callhook.errors import RetryableError
from callhook.lenient import text, timestamp
from callhook.record import iso_z
from callhook.vendors.ids import ListedIds
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.webhook import CALL_ID

#: the API's maximum `maxResults`
PAGE_SIZE = 100
#: the API's `createdAfter`/`createdBefore` (and `updatedAfter`) bounds are widened by this
#: much, then the window is applied exactly here: the docs do not say whether they include
#: the bound
WINDOW_MARGIN = timedelta(seconds=1)

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class Getter(Protocol):
    """The client's one GET (see `OpenPhoneClient.get`)."""

    def __call__(
        self, path: str, *, params: Mapping[str, Any] | None, not_found_is_late: bool
    ) -> Awaitable[dict[str, Any]]: ...


class ListCalls:
    """One reconcile listing over a source's numbers and counterparties."""

    def __init__(
        self, get: Getter, config: OpenPhoneSource, *, target: str, notes: list[str]
    ) -> None:
        self._get = get
        self._config = config
        self._target = target
        #: what the listing could not cover, for the reconcile summary
        self.notes = notes

    async def calls(self, since: datetime, until: datetime) -> AsyncIterator[Mapping[str, Any]]:
        """Every call created in [since, until), each once even when it shows up under two
        (number, counterparty) pairs; one whose id is not a Quo call id is skipped."""
        ids = ListedIds(CALL_ID, target=self._target, notes=self.notes)
        seen: set[str] = set()
        window = {
            "createdAfter": iso_z(since - WINDOW_MARGIN),
            "createdBefore": iso_z(until + WINDOW_MARGIN),
        }
        for number_id in await self.phone_number_ids():
            for participant in await self.counterparties(number_id, since):
                query = {
                    "phoneNumberId": number_id,
                    "participants": participant,
                    "maxResults": str(PAGE_SIZE),
                    **window,
                }
                async for call in self._pages("/v1/calls", query):
                    call_id = text(call.get("id"))
                    if call_id is None or call_id in seen or not created_in(call, since, until):
                        continue
                    if not ids.usable(call_id):
                        continue
                    seen.add(call_id)
                    yield call

    async def phone_number_ids(self) -> list[str]:
        """The configured workspace numbers, else every number `GET /v1/phone-numbers`
        lists (one request: that endpoint is not paged)."""
        if self._config.phone_number_ids:
            return list(self._config.phone_number_ids)
        body = await self._get("/v1/phone-numbers", params=None, not_found_is_late=False)
        numbers = body.get("data")
        if not isinstance(numbers, list):
            raise RetryableError(
                f"{self._target} listed phone numbers without a data array", target=self._target
            )
        ids = (text(item.get("id")) for item in numbers if isinstance(item, dict))
        return [number_id for number_id in ids if number_id]

    async def counterparties(self, number_id: str, since: datetime) -> list[str]:
        """The configured participants, else the E.164 numbers of the number's
        conversations updated since `since` (a call in the window updated its conversation
        at or after `since`). Group conversations contribute each of their numbers."""
        if self._config.participants:
            return list(self._config.participants)
        query = {
            "phoneNumbers": number_id,
            "updatedAfter": iso_z(since - WINDOW_MARGIN),
            "maxResults": str(PAGE_SIZE),
        }
        found: list[str] = []
        skipped: set[str] = set()
        async for conversation in self._pages("/v1/conversations", query):
            if text(conversation.get("phoneNumberId")) not in (None, number_id):
                continue
            people = conversation.get("participants")
            for person in people if isinstance(people, list) else []:
                number = text(person)
                if number is None or number in found:
                    continue
                # List Calls refuses anything but E.164 (short codes, user ids) with a 400
                if _E164.match(number):
                    found.append(number)
                else:
                    skipped.add(number)
        if skipped:
            self.notes.append(
                f"phone number {number_id}: {len(skipped)} counterparties are not E.164 "
                "numbers, which List Calls cannot take; their calls were not listed"
            )
        return found

    async def _pages(self, path: str, query: Mapping[str, str]) -> AsyncIterator[Mapping[str, Any]]:
        """Each item of every page, following `nextPageToken` until a page is empty or has
        none. A page that gives back the token it was asked with, or lists exactly the items
        of the page before, is a `RetryableError`: following it would never end."""
        token: str | None = None
        previous: list[str | None] = []
        while True:
            params = {**query, "pageToken": token} if token else dict(query)
            body = await self._get(path, params=params, not_found_is_late=False)
            page = body.get("data")
            if not isinstance(page, list):
                raise RetryableError(
                    f"{self._target} answered {path} without a data array", target=self._target
                )
            listed = [text(item.get("id")) for item in page if isinstance(item, dict)]
            if listed and listed == previous:
                raise RetryableError(
                    f"{self._target} answered {path} with the items of the page before again",
                    target=self._target,
                )
            previous = listed
            for item in page:
                if isinstance(item, dict):
                    yield item
            following = text(body.get("nextPageToken"))
            if not page or following is None:
                return
            if following == token:
                raise RetryableError(
                    f"{self._target} answered {path} with the page token it was asked with",
                    target=self._target,
                )
            token = following


def created_in(call: Mapping[str, Any], since: datetime, until: datetime) -> bool:
    """Whether the call's `createdAt` is in [since, until) (a call without one is kept)."""
    moment = timestamp(call.get("createdAt"))
    if moment is None:
        return True
    return since.timestamp() <= moment < until.timestamp()
