"""s3: one JSON object per call in an S3 (or S3-compatible) bucket, optionally with copies of
the call's recordings.

Layout: `{prefix}{source}/{YYYY}/{MM}/{DD}/{call_id}.json` (the UTC date of `created_at`,
else of the trigger's `received_at`) and `…/{call_id}/recordings/{recording_id}{ext}`.
The object carries its record's revision in `x-amz-meta-callhook-revision`; a write never
replaces a higher revision, and conditional puts (`If-Match` / `If-None-Match`) keep two
concurrent writers from undoing each other. Credentials come from the standard AWS chain.

A write does not read the object first when it can guess its state: each sink remembers the
revision and ETag of the objects it wrote last, and assumes a key it never wrote is absent.
The guess only chooses the put's precondition, so a wrong guess costs a failed put and a
`HeadObject`, never a lost update (the `HeadObject` per write was 17 % of worker CPU).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import field_validator

from callhook.errors import (
    ConfigError,
    PermanentError,
    RateLimited,
    RetryableError,
    UpstreamError,
)
from callhook.http import USER_AGENT
from callhook.lenient import text, timestamp
from callhook.netpolicy import recording_client
from callhook.sinks.base import Sink, SinkConfig, Trigger, WriteResult
from callhook.sinks.s3_recordings import RecordingCopier, http_status, key_segment

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import PutObjectRequestTypeDef

log = logging.getLogger("callhook.sinks.s3")

REVISION_METADATA = "callhook-revision"  # sent as x-amz-meta-callhook-revision

#: how often a write re-reads the object after losing a race to a concurrent writer
_WRITE_ATTEMPTS = 5
#: how many objects' last written state a sink remembers (~100 bytes each)
_REMEMBERED_OBJECTS = 10_000
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded"}
)
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "RequestTimeout"})
# Lenient about case and underscores: buckets from before AWS's current rules still exist.
_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_REGION_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class S3SinkConfig(SinkConfig):
    type: Literal["s3"] = "s3"
    bucket: str
    #: prepended verbatim to every key ("calls/" gives calls/quo/2024/...)
    prefix: str = ""
    region: str = "us-east-1"
    #: an S3-compatible store (MinIO, Ceph...); path-style addressing is used with it
    endpoint_url: str | None = None
    copy_recordings: bool = False

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if value.startswith("s3://") or "/" in value:
            raise ValueError("the bucket name only, without s3:// or a path (use prefix)")
        if not _BUCKET_NAME.fullmatch(value):
            raise ValueError("not a bucket name (3-63 letters, digits, dots, hyphens)")
        return value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError("must not start with '/' (S3 keys have no leading slash)")
        return value

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not _REGION_NAME.fullmatch(value):
            raise ValueError("not a region name (e.g. us-east-1)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials (they come from the AWS chain)")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value


@dataclass(frozen=True, slots=True)
class _Stored:
    revision: int
    etag: str


class S3Sink(Sink[S3SinkConfig]):
    """Writes the latest state of each call as one JSON object (see the module docstring)."""

    type_name: ClassVar[str] = "s3"
    config_model: ClassVar[type[SinkConfig]] = S3SinkConfig
    coalesces: ClassVar[bool] = True

    _stack: AsyncExitStack | None = None
    _client: S3Client | None = None
    #: set once the bucket answered
    _ready: bool = False
    #: the sink's own client for recording downloads (address-checked; see netpolicy)
    _downloads: httpx.AsyncClient | None = None
    #: cleared when the store rejects conditional puts (then the last writer wins)
    _conditional: bool = True
    #: key → what this sink last wrote there: a lower bound on the stored revision, since
    #: no write replaces a higher one (least recently written first)
    _written: OrderedDict[str, _Stored]

    async def start(self) -> None:
        """Create the S3 client and check the bucket answers (`HeadBucket`). The client is
        kept when the check fails: making one costs a tenth of a second of CPU on the
        event loop, too much to repeat on every retry through an outage."""
        if self._ready:
            return
        if self._client is None:
            self._written = OrderedDict()
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        region_name=self.config.region,
                        endpoint_url=self.config.endpoint_url,
                        config=_client_config(self.config),
                    )
                )
                if self.config.copy_recordings:
                    self._downloads = recording_client(
                        allow_private_networks=self.resources.allow_private_networks,
                        user_agent=USER_AGENT,
                    )
                    stack.push_async_callback(self._downloads.aclose)
                self._stack, self._client = stack.pop_all(), client
        try:
            await self._client.head_bucket(Bucket=self.config.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._start_failure(exc) from None
        self._ready = True

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack, self._client, self._downloads = None, None, None
        self._ready = False

    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        if not self._ready or self._client is None:
            raise RuntimeError(f"s3 sink {self.config.name!r} used before start()")
        if trigger.superseded:
            return WriteResult.SUPERSEDED  # the call's newer delivery writes its object
        base = call_base_key(self.config.prefix, record, trigger)
        context = {
            "sink": self.config.name,
            "source": record.get("source"),
            "call_id": record.get("call_id"),
            "event_key": trigger.event_key,
        }
        try:
            pending = await self._write_object(self._client, base, record, context)
        except (ClientError, BotoCoreError) as exc:
            raise s3_failure(exc, sink=self.config.name, bucket=self.config.bucket) from exc
        if pending is not None:
            raise pending
        return WriteResult.WRITTEN

    async def _write_object(
        self, client: S3Client, base: str, record: dict[str, Any], context: dict[str, Any]
    ) -> RetryableError | None:
        """Put the object unless a higher revision is stored; return a recording copy that
        should be retried (the object is written without it meanwhile)."""
        key = base + ".json"
        revision = int(record.get("revision") or 0)
        body: bytes | None = None
        pending: RetryableError | None = None
        # Without conditional puts a guess could overwrite a newer object: read first then.
        guessing = self._conditional
        for _ in range(_WRITE_ATTEMPTS):
            if guessing:
                stored, guessing = self._written.get(key), False
            else:
                stored = await self._stored(client, key)
            if stored is not None and stored.revision > revision:
                log.info(
                    "kept stored revision %d over %d", stored.revision, revision, extra=context
                )
                return None
            if body is None:
                shaped, pending = await self._with_recordings(client, base, record, context)
                body = orjson.dumps(shaped)
            if stored is not None and stored.etag.strip('"') == _md5(body):
                return pending
            etag = await self._put(client, key, body, revision, stored)
            if etag is not None:
                self._remember(key, _Stored(revision=revision, etag=etag))
                return pending
        raise RetryableError(
            f"s3 sink {self.config.name!r}: {key} kept changing under concurrent writers",
            target=self.config.name,
        )

    async def _stored(self, client: S3Client, key: str) -> _Stored | None:
        try:
            head = await client.head_object(Bucket=self.config.bucket, Key=key)
        except ClientError as exc:
            if http_status(exc) == 404:
                return None
            raise
        mark = head.get("Metadata", {}).get(REVISION_METADATA, "")
        # An object without a readable mark was not written by us: any revision replaces it.
        revision = int(mark) if mark.isdigit() else -1
        return _Stored(revision=revision, etag=head.get("ETag", ""))

    def _remember(self, key: str, written: _Stored) -> None:
        self._written[key] = written
        self._written.move_to_end(key)
        if len(self._written) > _REMEMBERED_OBJECTS:
            self._written.popitem(last=False)

    async def _put(
        self, client: S3Client, key: str, body: bytes, revision: int, stored: _Stored | None
    ) -> str | None:
        """Put the object if it is still as `stored` says; its new ETag, or None when the
        precondition failed (another writer won, or the guess was wrong)."""
        request: PutObjectRequestTypeDef = {
            "Bucket": self.config.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "Metadata": {REVISION_METADATA: str(revision)},
        }
        if self._conditional:
            if stored is None:
                request["IfNoneMatch"] = "*"
            else:
                request["IfMatch"] = stored.etag
        try:
            answer = await client.put_object(**request)
        except ClientError as exc:
            code = _code(exc)
            if code in _CONFLICT_CODES:
                return None
            if code == "NotImplemented" and self._conditional:
                log.warning(
                    "the store does not support conditional puts: the last writer wins",
                    extra={"sink": self.config.name},
                )
                self._conditional = False
                return None
            raise
        return answer.get("ETag") or f'"{_md5(body)}"'

    async def _with_recordings(
        self, client: S3Client, base: str, record: dict[str, Any], context: dict[str, Any]
    ) -> tuple[dict[str, Any], RetryableError | None]:
        recordings = record.get("recordings")
        if self._downloads is None or not isinstance(recordings, list):
            return record, None
        copier = RecordingCopier(
            client, self._downloads, bucket=self.config.bucket, timeout_s=self.config.timeout_s
        )
        linked, pending = await copier.link(recordings, f"{base}/recordings/", context)
        return {**record, "recordings": linked}, pending

    def _start_failure(self, exc: ClientError | BotoCoreError) -> Exception:
        label = f"sink {self.config.name!r} (s3)"
        bucket = self.config.bucket
        if isinstance(exc, NoCredentialsError):
            return ConfigError(
                f"{label}: no AWS credentials (environment, shared profile or instance role)"
            )
        if isinstance(exc, ClientError):
            status = http_status(exc)
            if status == 404 or _code(exc) == "NoSuchBucket":
                return ConfigError(f"{label}: bucket {bucket!r} does not exist")
            if status == 403:
                return ConfigError(
                    f"{label}: no access to bucket {bucket!r} (check the credentials and policy)"
                )
            if status is not None and status < 500 and status not in (408, 429):
                return ConfigError(
                    f"{label}: bucket {bucket!r} answered HTTP {status} (wrong region or endpoint?)"
                )
        return s3_failure(exc, sink=self.config.name, bucket=bucket)


def call_base_key(prefix: str, record: dict[str, Any], trigger: Trigger) -> str:
    """`{prefix}{source}/{YYYY}/{MM}/{DD}/{call_id}`: the call's key without `.json`."""
    source, call_id = text(record.get("source")), text(record.get("call_id"))
    moment = timestamp(record.get("created_at")) or timestamp(trigger.received_at)
    if source is None or call_id is None or moment is None:
        raise PermanentError(
            "s3: the record lacks source, call_id or any date to file it under", target="s3"
        )
    day = datetime.fromtimestamp(moment, UTC)
    return f"{prefix}{key_segment(source)}/{day:%Y/%m/%d}/{key_segment(call_id)}"


def s3_failure(exc: ClientError | BotoCoreError, *, sink: str, bucket: str) -> UpstreamError:
    """The Callhook error for an S3 failure: throttling, 5xx and connection trouble are
    retryable; refusals (AccessDenied, NoSuchBucket, bad credentials...) are permanent."""
    where = f"s3 sink {sink!r} (bucket {bucket!r})"
    if isinstance(exc, NoCredentialsError):
        return PermanentError(f"{where}: no AWS credentials", target=sink)
    if not isinstance(exc, ClientError):
        return RetryableError(f"{where}: {type(exc).__name__}", target=sink)
    code, status = _code(exc), http_status(exc)
    reason = f"{where}: {exc.operation_name} answered {code} (HTTP {status})"
    if code in _THROTTLE_CODES or status == 429:
        return RateLimited(reason, target=sink, status_code=status)
    if code in _TRANSIENT_CODES or status is None or status >= 500 or status == 408:
        return RetryableError(reason, target=sink, status_code=status)
    return PermanentError(reason, target=sink, status_code=status)


def _client_config(config: S3SinkConfig) -> AioConfig:
    options: dict[str, Any] = {
        "connect_timeout": config.timeout_s,
        "read_timeout": config.timeout_s,
        # One quick retry (a stale pooled connection); backoff belongs to the deliver actor.
        "retries": {"mode": "standard", "total_max_attempts": 2},
        "user_agent_extra": "callhook",
    }
    if config.endpoint_url:
        options["s3"] = {"addressing_style": "path"}
        # Many S3-compatible stores reject the newer default CRC checksum headers.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    return AioConfig(**options)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _md5(body: bytes) -> str:
    # S3's ETag of a single-part upload without SSE-KMS: a match means "already stored".
    return hashlib.md5(body, usedforsecurity=False).hexdigest()
