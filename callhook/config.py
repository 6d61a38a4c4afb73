"""Configuration: TOML → `${ENV}` expansion → frozen pydantic models, parsed once.

`os.environ` is read here (`load_config`: `$CALLHOOK_CONFIG` and the `${ENV}` references)
and otherwise only to hand the config file to child processes: workers/launch.py gives the
workers and the scheduler a copy with `$CALLHOOK_CONFIG` (and the metrics directory), and
service/run.py sets `$CALLHOOK_CONFIG` before Uvicorn starts several ingress processes,
which inherit it. Libraries read their own variables (boto its AWS credentials);
bench/naive.py is the benchmarks' baseline, not Callhook.

Every error is a `ConfigError` whose message names the key and the problem in one line, and
never contains a secret's value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from callhook.errors import ConfigError
from callhook.redaction import redact_url, redact_urls
from callhook.redis_connect import is_sentinel_url, parse_sentinel_url
from callhook.sinks import SINKS
from callhook.sinks.base import SinkConfig
from callhook.vendors import VENDORS
from callhook.vendors.base import MIN_SECRET_BYTES, SourceConfig

DEFAULT_PATH = Path("callhook.toml")
#: written by `callhook up` in sandbox mode; found when there is no other config
SANDBOX_PATH = Path("var/sandbox.toml")
ENV_PATH_VARIABLE = "CALLHOOK_CONFIG"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class RedisConfig(_Section):
    #: a plain Redis URL, or a Sentinel address (callhook/redis_connect.py)
    url: str = "redis://127.0.0.1:6379/0"
    #: the sentinels' own password, when they need one (Sentinel URLs only)
    sentinel_password: SecretStr | None = None
    #: prefix of every key Callhook and its Dramatiq broker write
    namespace: str = Field(default="callhook", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: how long an accepted event key is remembered for duplicate detection (≥ 72 h)
    dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=72 * 3600)
    #: bound on the accept step (dedupe + enqueue) before ingress answers 503
    accept_timeout_s: float = Field(default=2.0, gt=0, le=30)
    #: replicas that must hold an accept (and a worker's retry re-enqueue or dead letter)
    #: before it counts as done: Redis `WAIT` (callhook/replication.py); 0: the primary's
    #: word is enough
    replicas_ack: int = Field(default=0, ge=0, le=100)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if is_sentinel_url(value):
            parse_sentinel_url(value)  # a ValueError says what is wrong, password unquoted
        elif not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be a redis://, rediss://, unix://, redis+sentinel:// or "
                "rediss+sentinel:// URL"
            )
        return value

    @field_validator("sentinel_password")
    @classmethod
    def _only_with_sentinels(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        url = info.data.get("url")
        if value is not None and url is not None and not is_sentinel_url(url):
            raise ValueError("only used with a redis+sentinel:// or rediss+sentinel:// url")
        return value

    @field_serializer("url")
    def _hide_password(self, value: str) -> str:
        return redact_url(value)

    @property
    def wait_ms(self) -> int:
        """How long one `WAIT` for `replicas_ack` replicas may block: three quarters of
        `accept_timeout_s`, the rest of the accept's budget being the write itself."""
        return max(1, int(self.accept_timeout_s * 750))


class IngressConfig(_Section):
    """`[ingress]`; the limits below are enforced by the server itself (service/protocol.py),
    so a slow or oversized client is cut off with or without a reverse proxy in front."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    timestamp_tolerance_s: int = Field(default=300, gt=0)
    #: request line and headers together; larger heads get 431
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    #: from the connection opening (or a request's first byte) to the end of its headers
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: from the end of the headers to the end of the body; slower deliveries get 408
    body_timeout_s: float = Field(default=30.0, gt=0, le=600)
    #: an idle keep-alive connection is closed after this
    keep_alive_timeout_s: int = Field(default=5, ge=1, le=300)
    #: connections served at once (idle ones included); a request beyond gets 503
    max_connections: int = Field(default=512, ge=1)
    #: peers whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks)
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    #: a log line for every accepted (or duplicate) delivery, at INFO; else at DEBUG (the
    #: call journal has each one either way; rejections are always logged)
    log_accepted: bool = False


class ReconcileConfig(_Section):
    interval_s: int = Field(default=900, ge=0)
    lookback_s: int = Field(default=7200, gt=0)
    #: vendor requests one run of one source may make (List Calls pages, and Quo's phone
    #: number and conversation pages) before it stops with an error: a vendor that always
    #: answers "more" cannot keep a run paging for ever
    max_pages: int = Field(default=10_000, gt=0)


class RetryPolicyConfig(_Section):
    """One retry schedule: `max_attempts` retries after the first try, backing off
    exponentially (with jitter) from `base_s` to `cap_s`."""

    max_attempts: int = Field(ge=0, le=1000)
    base_s: float = Field(gt=0)
    cap_s: float = Field(gt=0)


class RetriesConfig(_Section):
    """`[retries.vendor_transient]`, `[retries.not_ready]`, `[retries.sink_transient]`: the
    workers' retry schedules (workers/retrying.py `RetryPolicies`). A schedule left out
    keeps its built-in default; shorter ones are for test and chaos runs."""

    vendor_transient: RetryPolicyConfig | None = None
    not_ready: RetryPolicyConfig | None = None
    sink_transient: RetryPolicyConfig | None = None


class WorkersConfig(_Section):
    """`[workers]`: the worker processes of `callhook worker` and `callhook up`."""

    #: on SIGTERM, how long in-flight messages get to finish; a process still holding some
    #: then exits with status 5, leaving them unacknowledged (they are redelivered)
    shutdown_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: a worker process silent this long is taken for dead and the messages it held go back
    #: to their queues; each process beats every sixth of it. Set it alike on every host: a
    #: shorter one elsewhere takes a live worker for dead (its work then runs twice)
    heartbeat_timeout_s: float = Field(default=30.0, ge=3, le=3600)


class RecordingsConfig(_Section):
    """`[recordings]`: how recording audio is fetched (the s3 sink's `copy_recordings`).

    Only URLs the vendor API answered are downloaded, and only from public addresses:
    `allow_private_networks` also allows loopback and private ones (a test rig, a store on
    your own network). Link-local and cloud metadata addresses stay refused either way."""

    allow_private_networks: bool = False


class DeadLettersConfig(_Section):
    """`[dead_letters]`: how long dead letters are kept and how many, per stage (each keeps
    its whole message to replay it); past either limit the oldest are dropped, counted."""

    retention_days: int = Field(default=30, ge=1, le=3650)
    max_entries: int = Field(default=10_000, ge=1, le=1_000_000)


class JournalConfig(_Section):
    """`[journal]`: what happened to each call (callhook/journal/), kept in Redis for the
    console and the JSON API."""

    #: a call's journal, its index entries and its summary are kept this long after its
    #: last activity (its index entries: after it was first seen)
    retention_days: int = Field(default=7, ge=1, le=365)
    #: entries kept per call (the oldest go first; a count of those dropped is kept)
    max_entries_per_call: int = Field(default=200, ge=10, le=10_000)
    #: bound on one journal write; a slower or failed one is logged and counted, never
    #: failing or holding up the work it describes
    write_timeout_s: float = Field(default=1.0, gt=0, le=30)


class ConsoleConfig(_Section):
    """`[console]`: the web console (`/console`) and the JSON API (`/api/v1`), both served
    by `callhook serve`. Both are off (404) unless `token` is set."""

    #: the API's Bearer token and the console's login; at least 16 bytes
    token: SecretStr | None = None
    #: how long a console login lasts
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"too short: the console token needs at least {MIN_SECRET_BYTES} bytes "
                "(e.g. openssl rand -base64 32)"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.token is not None


class Config(_Section):
    redis: RedisConfig = RedisConfig()
    ingress: IngressConfig = IngressConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    retries: RetriesConfig = RetriesConfig()
    workers: WorkersConfig = WorkersConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    dead_letters: DeadLettersConfig = DeadLettersConfig()
    journal: JournalConfig = JournalConfig()
    console: ConsoleConfig = ConsoleConfig()
    # SerializeAsAny: dump each entry with its vendor's / sink type's own fields
    sources: Mapping[str, SerializeAsAny[SourceConfig]] = Field(default_factory=dict)
    sinks: tuple[SerializeAsAny[SinkConfig], ...] = ()
    #: where the config came from, for messages ("built-in defaults" when no file)
    origin: str = "built-in defaults"

    @model_validator(mode="after")
    def _replays_cannot_outlive_dedupe(self) -> Config:
        # A signed delivery replayed after its dedupe mark expired would be accepted again.
        if self.ingress.timestamp_tolerance_s >= self.redis.dedupe_ttl_s:
            raise ValueError(
                f"ingress.timestamp_tolerance_s: must be below redis.dedupe_ttl_s "
                f"({self.redis.dedupe_ttl_s}), so a replayed delivery never outlives its "
                "dedupe mark"
            )
        return self


def resolve_path(
    explicit: str | Path | None, environ: Mapping[str, str], *, sandbox: bool = True
) -> Path | None:
    """`--config`, else `$CALLHOOK_CONFIG`, else `./callhook.toml`, else (with `sandbox`)
    the sandbox's `./var/sandbox.toml`, each if it exists; else None (built-in defaults)."""
    if explicit:
        return Path(explicit)
    if environ.get(ENV_PATH_VARIABLE):
        return Path(environ[ENV_PATH_VARIABLE])
    if DEFAULT_PATH.is_file():
        return DEFAULT_PATH
    return SANDBOX_PATH if sandbox and SANDBOX_PATH.is_file() else None


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    sandbox: bool = True,
) -> Config:
    """Load and validate the config; `path=None` follows `resolve_path`."""
    environ = os.environ if environ is None else environ
    resolved = resolve_path(path, environ, sandbox=sandbox)
    if resolved is None:
        return Config()
    try:
        raw = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{resolved}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{resolved}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{resolved}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{resolved}: not valid TOML ({exc})") from None
    return parse_config(raw, environ, origin=str(resolved))


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str], *, origin: str) -> Config:
    """Validate an already-decoded TOML document."""
    expanded = _expand(dict(raw), environ, ())
    sources = {
        name: _parse_source(name, table)
        for name, table in _table(expanded.pop("sources", {}), "sources").items()
    }
    sinks_raw = expanded.pop("sinks", [])
    if not isinstance(sinks_raw, list):
        raise ConfigError("sinks: must be an array of tables ([[sinks]])")
    sinks = tuple(_parse_sink(index, table) for index, table in enumerate(sinks_raw))
    names = [sink.name for sink in sinks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"sinks: two sinks are named {name!r}")
    try:
        return Config.model_validate(
            {**expanded, "sources": sources, "sinks": sinks, "origin": origin}
        )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, ())) from None


def _parse_source(name: str, table: Any) -> SourceConfig:
    where = ("sources", name)
    if not _SOURCE_NAME.match(name):
        raise ConfigError(f"sources.{name}: a source name may use letters, digits, '_' and '-'")
    table = _table(table, ".".join(where))
    vendor_name = table.get("vendor")
    if vendor_name is None:
        raise ConfigError(f"sources.{name}.vendor: missing (one of {', '.join(VENDORS)})")
    vendor = VENDORS.get(str(vendor_name))
    if vendor is None:
        raise ConfigError(
            f"sources.{name}.vendor: unknown vendor {vendor_name!r} (one of {', '.join(VENDORS)})"
        )
    try:
        source: SourceConfig = vendor.config_model.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    return source


def _parse_sink(index: int, table: Any) -> SinkConfig:
    table = _table(table, f"sinks[{index}]")
    label = f"sinks[{index}]" if "name" not in table else f"sinks[{index}] ({table['name']})"
    type_name = table.get("type")
    sink = SINKS.get(str(type_name)) if type_name is not None else None
    if sink is None:
        problem = "missing" if type_name is None else f"unknown sink type {type_name!r}"
        raise ConfigError(f"{label}.type: {problem} (one of {', '.join(SINKS)})")
    try:
        return sink.config_model.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, (label,))) from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table")
    return value


def _expand(value: Any, environ: Mapping[str, str], where: tuple[str, ...]) -> Any:
    """Replace `${NAME}` in every string; a missing variable names itself and the key."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{'.'.join(where)}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, environ, (*where, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, environ, (*where, f"[{i}]")) for i, item in enumerate(value)]
    return value


def _describe(exc: ValidationError, where: tuple[str, ...]) -> str:
    """The first validation problem as `key.path: message` (never the offending value)."""
    error = exc.errors(include_input=False, include_url=False)[0]
    location = ".".join((*where, *(str(part) for part in error["loc"]))) or "config"
    message = error["msg"]
    if not where and not error["loc"] and error["type"] == "value_error":
        # a check across sections names its own keys
        return str(message).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing"
    return f"{location.replace('.[', '[')}: {message}"


def redacted(config: Config) -> dict[str, Any]:
    """The resolved config as plain data with every secret shown as `**********`, and the
    user info and query values of every URL in it hidden (`callhook.redaction`)."""
    dumped: dict[str, Any] = redact_urls(config.model_dump(mode="json", exclude={"origin"}))
    return dumped
