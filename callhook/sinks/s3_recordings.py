"""Recording copies for the s3 sink: stream a vendor's audio URL into the bucket, once.

The body is never held whole in memory: it is read in chunks and sent as one `PutObject`
when it ends below `PART_SIZE`, else as a multipart upload of parts of at least
`PART_SIZE` bytes (aborted on any failure, so no orphaned parts are billed).

Only URLs the vendor API answered (`url_from: "api"`) are downloaded: a webhook payload
could name any URL at all. The download client (`callhook.netpolicy.recording_client`)
connects only to allowed addresses, on every redirect hop.

S3 errors (`botocore` exceptions) propagate to the caller, which classifies them; vendor
download failures become `RecordingUnavailable` (the link is dead or refused: skip it) or
`RetryableError` (the vendor is having a bad moment: try again later).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx
from botocore.exceptions import ClientError

from callhook.errors import RateLimited, RetryableError
from callhook.http import parse_retry_after
from callhook.lenient import text
from callhook.netpolicy import AddressRefused

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("callhook.sinks.s3")

#: S3's minimum part size (all parts but the last); also the most we buffer per upload.
PART_SIZE = 5 * 1024 * 1024

EXTENSIONS = (".mp3", ".wav", ".m4a", ".ogg", ".webm")

_CONTENT_TYPES = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/x-wav": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mp4": ".m4a",
    "audio/m4a": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/ogg": ".ogg",
    "application/ogg": ".ogg",
    "audio/webm": ".webm",
    "video/webm": ".webm",
}

_READ_CHUNK = 256 * 1024


class RecordingUnavailable(Exception):
    """The vendor URL no longer serves the recording (expired, forbidden, empty).

    Retrying the same URL will not help; a later event usually carries a fresh one.
    """


def key_segment(value: str) -> str:
    """An id as one key segment: a '/' or other odd character in it cannot add levels."""
    return quote(value, safe="")


def url_extension(url: str) -> str:
    """`.mp3`, `.wav`, `.m4a`, `.ogg` or `.webm` when the URL's path ends with one, else ""."""
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if suffix in EXTENSIONS else ""


def content_type_extension(content_type: str | None) -> str:
    """The extension for an audio Content-Type we know, else ""."""
    if not content_type:
        return ""
    return _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower(), "")


def url_host(url: str) -> str:
    """The host of a vendor URL: all that logs and errors may say about it, since the path
    and query of a signed link are as good as a credential."""
    return urlsplit(url).hostname or "?"


class RecordingCopier:
    """Copies recordings into `bucket` under caller-chosen base keys (`…/{recording_id}`).

    `http` must be a `recording_client` (or, in tests, a client as careful): the copier
    trusts it to refuse addresses downloads may not reach."""

    def __init__(
        self, client: S3Client, http: httpx.AsyncClient, *, bucket: str, timeout_s: float
    ) -> None:
        self._client = client
        self._http = http
        self._bucket = bucket
        self._timeout = httpx.Timeout(timeout_s)

    async def link(
        self, recordings: list[Any], prefix: str, context: dict[str, Any]
    ) -> tuple[list[Any], RetryableError | None]:
        """Copy each recording whose url the vendor API answered to
        `{prefix}{recording_id}{ext}`; return the recordings with `stored_as` set for those
        now in the bucket, and the first transient download failure (the others are still
        tried). Payload URLs, dead links and refused addresses are logged and skipped."""
        linked: list[Any] = []
        pending: RetryableError | None = None
        for recording in recordings:
            url = recording.get("url") if isinstance(recording, dict) else None
            recording_id = text(recording.get("id")) if isinstance(recording, dict) else None
            if not isinstance(url, str) or not url or recording_id is None:
                linked.append(recording)
                continue
            if recording.get("url_from") != "api":
                origin = "a webhook payload" if recording.get("url_from") else "an unknown origin"
                log.warning(
                    "recording %s not copied: its URL (host %s) is from %s, not the vendor "
                    "API; only URLs the API answers are downloaded",
                    recording_id,
                    url_host(url),
                    origin,
                    extra=context,
                )
                linked.append(recording)
                continue
            try:
                key = await self.store(prefix + key_segment(recording_id), url)
            except RecordingUnavailable as exc:
                log.warning("recording %s not copied: %s", recording_id, exc, extra=context)
                linked.append(recording)
                continue
            except RetryableError as exc:
                log.warning("recording %s not copied yet: %s", recording_id, exc, extra=context)
                pending = pending or exc
                linked.append(recording)
                continue
            linked.append({**recording, "stored_as": f"s3://{self._bucket}/{key}"})
        return linked, pending

    async def store(self, base_key: str, url: str) -> str:
        """Make sure the recording at `url` is in the bucket; return its key.

        The key is `base_key` plus the extension from the URL path or, failing that, the
        Content-Type. When an object is already there the URL is not downloaded again.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise RecordingUnavailable("the recording URL is not http(s)")
        url_ext = url_extension(url)
        existing = await self._existing_key(base_key, url_ext)
        if existing is not None:
            return existing
        return await self._copy(base_key, url, url_ext)

    async def _existing_key(self, base_key: str, url_ext: str) -> str | None:
        if url_ext:
            key = base_key + url_ext
            try:
                await self._client.head_object(Bucket=self._bucket, Key=key)
            except ClientError as exc:
                if http_status(exc) == 404:
                    return None
                raise
            return key
        # The extension will come from the Content-Type, so any of them may be stored.
        candidates = {base_key, *(base_key + ext for ext in EXTENSIONS)}
        listing = await self._client.list_objects_v2(
            Bucket=self._bucket, Prefix=base_key, MaxKeys=100
        )
        for entry in listing.get("Contents", []):
            if entry.get("Key") in candidates:
                return entry["Key"]
        return None

    async def _copy(self, base_key: str, url: str, url_ext: str) -> str:
        host = url_host(url)
        try:
            async with self._http.stream(
                "GET", url, timeout=self._timeout, follow_redirects=True
            ) as response:
                _raise_for_download(response, host)
                content_type = response.headers.get("content-type")
                key = base_key + (url_ext or content_type_extension(content_type))
                await self._upload(
                    key,
                    content_type or "application/octet-stream",
                    response.aiter_bytes(_READ_CHUNK),
                )
        except AddressRefused as exc:
            raise RecordingUnavailable(
                f"recording download from {host} refused: {exc} (see [recordings] in "
                "docs/configuration.md)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise RetryableError(f"recording download from {host} timed out") from exc
        except httpx.TooManyRedirects as exc:
            raise RecordingUnavailable(
                f"recording URL at {host} redirects in a loop or too often"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise RecordingUnavailable(
                f"recording URL at {host} redirects to a URL that is not http(s)"
            ) from exc
        except httpx.RequestError as exc:
            raise RetryableError(
                f"recording download from {host} failed: {type(exc).__name__}"
            ) from exc
        return key

    async def _upload(self, key: str, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= PART_SIZE:
                await self._multipart(key, content_type, bytes(buffer), chunks)
                return
        if not buffer:
            raise RecordingUnavailable("the recording URL answered with an empty body")
        await self._client.put_object(
            Bucket=self._bucket, Key=key, Body=bytes(buffer), ContentType=content_type
        )

    async def _multipart(
        self, key: str, content_type: str, first: bytes, rest: AsyncIterator[bytes]
    ) -> None:
        created = await self._client.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type
        )
        upload_id = created["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            await self._part(key, upload_id, parts, first)
            buffer = bytearray()
            async for chunk in rest:
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    await self._part(key, upload_id, parts, bytes(buffer))
                    buffer.clear()
            if buffer:
                await self._part(key, upload_id, parts, bytes(buffer))
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await self._abort(key, upload_id)
            raise

    async def _part(
        self, key: str, upload_id: str, parts: list[CompletedPartTypeDef], body: bytes
    ) -> None:
        number = len(parts) + 1
        answer = await self._client.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id
            )
        except Exception as exc:
            # The original failure matters more; a lifecycle rule sweeps what is left.
            log.warning("could not abort multipart upload of %s: %s", key, type(exc).__name__)


def _raise_for_download(response: httpx.Response, host: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"recording download from {host} answered HTTP {status}"
    if status == 429:
        raise RateLimited(
            reason,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status in (408, 425) or status >= 500:
        raise RetryableError(reason, status_code=status)
    raise RecordingUnavailable(reason)


def http_status(exc: ClientError) -> int | None:
    """The HTTP status of an S3 error answer (None when there was no answer)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
