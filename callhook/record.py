"""The call record (`callhook.call/v1`) and how partial observations of one call merge.

A vendor normaliser turns one observation (an event payload, a Get Call answer) into a
`CallRecord` that may leave fields unset. `merge` folds observations together so that
the newest state of the call wins whatever order they are processed in:

* status moves forward only: ringing < in_progress < a final status; between two final
  statuses (or two equal ranks) the observation made later wins;
* any other scalar field takes the newer observation's value when it has one, and the
  older observation's value only where the newer is empty;
* recordings and participants are unioned by id; vendor_data is merged key by key. A
  recording's `url` travels with its `url_from`: a URL the vendor API gave is kept over one
  only a webhook payload gave (only API URLs are downloaded: `callhook/sinks/s3_recordings.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA = "callhook.call/v1"


class CallStatus(StrEnum):
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    MISSED = "missed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REJECTED = "rejected"
    CANCELED = "canceled"
    FAILED = "failed"
    UNKNOWN = "unknown"


FINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.MISSED,
        CallStatus.NO_ANSWER,
        CallStatus.BUSY,
        CallStatus.REJECTED,
        CallStatus.CANCELED,
        CallStatus.FAILED,
    }
)


def status_rank(status: CallStatus) -> int:
    if status in FINAL_STATUSES:
        return 3
    return {CallStatus.UNKNOWN: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2}[status]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Participant(_Model):
    id: str
    name: str | None = None
    joined_at: str | None = None
    left_at: str | None = None
    duration_s: float | None = None


#: where a recording's URL came from: the vendor's API answer, or a webhook payload
UrlFrom = Literal["api", "payload"]


class Recording(_Model):
    id: str
    url: str | None = None
    #: "api" when the vendor API answered `url`, "payload" when only a webhook said it (null
    #: without a url). The s3 sink downloads API URLs only: a payload could name any URL.
    url_from: UrlFrom | None = None
    duration_s: float | None = None
    started_at: str | None = None
    stored_as: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_origin_without_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("url") and data.get("url_from") is not None:
            return {**data, "url_from": None}
        return data


def urls_from(recordings: Iterable[Recording], origin: UrlFrom) -> tuple[Recording, ...]:
    """The recordings with `url_from = origin` on each one that has a url (for mappings whose
    recording parser serves both the API answer and the payload)."""
    return tuple(
        item.model_copy(update={"url_from": origin}) if item.url else item for item in recordings
    )


class LastEvent(_Model):
    type: str
    key: str
    received_at: str


class CallRecord(_Model):
    """One call, across all the events and API answers seen for it."""

    schema_: Literal["callhook.call/v1"] = Field(default="callhook.call/v1", alias="schema")
    source: str
    vendor: str
    call_id: str
    status: CallStatus = CallStatus.UNKNOWN
    vendor_status: str | None = None
    direction: Literal["inbound", "outbound"] | None = None
    media: Literal["audio", "video"] | None = None
    initiator: str | None = None
    receiver: str | None = None
    participants: tuple[Participant, ...] = ()
    created_at: str | None = None
    started_at: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    recordings: tuple[Recording, ...] = ()
    transcript: Any = None
    summary: Any = None
    voicemail: Any = None
    last_event: LastEvent | None = None
    vendor_data: dict[str, Any] = Field(default_factory=dict)
    # Not part of the wire schema's required fields, but part of v1: set when the record was
    # built from the webhook payload alone because the vendor API never returned the call.
    enrichment: Literal["api", "payload_only"] | None = None
    observed_at: str | None = None
    #: starts at the record's creation time (`first_revision`) and grows by one on every
    #: merge of this call; sinks never replace a higher revision with a lower
    revision: int = 0
    updated_at: str | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The record as its JSON wire shape (`schema_` written as its alias, `schema`)."""
        return self.model_dump(mode="json", by_alias=True)


_SCALARS = (
    "vendor_status",
    "direction",
    "media",
    "initiator",
    "receiver",
    "created_at",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "transcript",
    "summary",
    "voicemail",
)


def first_revision() -> int:
    """The revision of a call's first record: milliseconds since the epoch.

    Not 1: the record store forgets a call after RECORD_TTL_S (or with a lost Redis), and
    a record built again from scratch must still outrank what sinks stored before, or the
    database and S3 sinks would ignore every later update of that call.
    """
    return time.time_ns() // 1_000_000


def iso_z(moment: datetime | float, *, timespec: str = "milliseconds") -> str:
    """`moment` (a datetime, naive ones taken as UTC, or unix seconds) as the ISO-8601 UTC
    text every Callhook time is written in: `2024-05-01T14:03:00.000Z`. `timespec` is
    `datetime.isoformat`'s, for an API that wants another precision."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now_iso() -> str:
    return iso_z(datetime.now(UTC))


def _is_newer(candidate: CallRecord, current: CallRecord) -> bool:
    """Whether `candidate` describes a later state of the call than `current`."""
    c_rank, o_rank = status_rank(candidate.status), status_rank(current.status)
    if c_rank != o_rank:
        return c_rank > o_rank
    return (candidate.observed_at or "") >= (current.observed_at or "")


def _union_by_id(older: tuple[Any, ...], newer: tuple[Any, ...]) -> tuple[Any, ...]:
    merged: dict[str, Any] = {item.id: item for item in older}
    for item in newer:
        previous = merged.get(item.id)
        if previous is None:
            merged[item.id] = item
        else:
            # keep what the older one knew (e.g. stored_as) where the newer is silent
            fields = {k: v for k, v in item.model_dump().items() if v is not None}
            if isinstance(item, Recording):
                link = _link(previous, item)
                fields.update(url=link.url, url_from=link.url_from)
            merged[item.id] = previous.model_copy(update=fields)
    return tuple(merged.values())


def _link(older: Recording, newer: Recording) -> Recording:
    """The copy of one recording whose (url, url_from) the merge keeps: the newer one's,
    unless it has no url, or only the older one's url came from the vendor API. So a payload
    can never replace a URL the API gave, and the API's answer makes a recording fetchable
    whichever order the two are merged in."""
    if newer.url is None:
        return older
    if older.url is not None and older.url_from == "api" and newer.url_from != "api":
        return older
    return newer


def merge(current: CallRecord | None, observation: CallRecord) -> CallRecord:
    """Fold `observation` into `current`; the newer state wins field by field."""
    if current is None:
        return observation.model_copy(
            update={"updated_at": utc_now_iso(), "revision": first_revision()}
        )
    if (current.source, current.call_id) != (observation.source, observation.call_id):
        raise ValueError("merge() of records for different calls")
    newer, older = (
        (observation, current) if _is_newer(observation, current) else (current, observation)
    )
    update: dict[str, Any] = {}
    for name in _SCALARS:
        value = getattr(newer, name)
        update[name] = value if value is not None else getattr(older, name)
    update["status"] = newer.status if newer.status != CallStatus.UNKNOWN else older.status
    update["participants"] = _union_by_id(older.participants, newer.participants)
    update["recordings"] = _union_by_id(older.recordings, newer.recordings)
    update["vendor_data"] = {**older.vendor_data, **newer.vendor_data}
    update["enrichment"] = (
        "api"
        if "api" in (current.enrichment, observation.enrichment)
        else (newer.enrichment or older.enrichment)
    )
    update["last_event"] = _latest_event(current.last_event, observation.last_event)
    update["observed_at"] = max(current.observed_at or "", observation.observed_at or "") or None
    update["revision"] = current.revision + 1
    update["updated_at"] = utc_now_iso()
    return newer.model_copy(update=update)


def _latest_event(a: LastEvent | None, b: LastEvent | None) -> LastEvent | None:
    if a is None or b is None:
        return a or b
    return b if b.received_at >= a.received_at else a
