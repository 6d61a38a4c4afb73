"""The contract every registered vendor keeps, run once for each vendor in `VENDORS`.

Every test here is parametrized over the registry (`sorted(VENDORS)`) and takes all that is
vendor-specific from the vendor's declaration and its kit (`callhook.vendors.kit`): a source
from `kit.example_source(kit.new_secrets(), url)`, deliveries from `kit.simulate_delivery`
and from the fixture files in `kit.fixtures`, the vendor's API from `kit.simulator_app` on a
loopback server. A new vendor gets all of these tests for free the moment it is registered,
with no edit here. Its folder, tests/vendors/<name>/, then holds only what is particular to
it: exact payloads and events, error texts and answer shapes, its mapping tables.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callhook.errors import NotReadyYet, PermanentError, RateLimited, RetryableError
from callhook.events import MAX_PAYLOAD_DEPTH, Delivery, Event, EventType
from callhook.http import json_error_code
from callhook.record import CallRecord, CallStatus, LastEvent, merge
from callhook.vendors import VENDORS
from callhook.vendors.base import Fetched, SourceConfig, Vendor, VendorClient
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.simulator import register
from tests.servers import ServerThread
from tests.vendors.support import TOLERANCE, bad_payload_reason, refusal, window

NAMES = sorted(VENDORS)
#: when deliveries are made and checked, unix seconds (2026-01-01T00:00:00Z)
NOW = 1767225600.0
DAY = 86400.0
SOURCE = "contract"
RECEIVED = "2026-01-01T00:10:00.000Z"
OBSERVED = "2026-01-01T00:10:05.000Z"
#: an API base URL for sources whose API the test never calls
NO_API = "http://127.0.0.1:9"


# --- what the tests take from the vendor and its kit -------------------------------------


@pytest.fixture(params=NAMES)
def vendor(request: pytest.FixtureRequest) -> Vendor[Any]:
    return VENDORS[request.param]


def configured(
    vendor: Vendor[Any], api_base_url: str = NO_API, secrets: Mapping[str, str] | None = None
) -> SourceConfig:
    """A source of `vendor`, from its kit's example table (with fresh secrets unless given)."""
    kit = vendor.kit
    table = kit.example_source(kit.new_secrets() if secrets is None else secrets, api_base_url)
    config: SourceConfig = vendor.config_model.model_validate(table)
    return config


def fixture_names(vendor: Vendor[Any]) -> list[str]:
    """The vendor's webhook fixtures: `<vendor type>[__<variant>]`."""
    return sorted(path.stem for path in vendor.kit.fixtures.glob("*.json"))


def simulated(vendor: Vendor[Any], config: SourceConfig) -> Delivery:
    """A delivery of the kit's completed type about a new call, at NOW."""
    kit = vendor.kit
    return kit.simulate_delivery(config, kit.completed_type, kit.simulated_call(None, NOW), NOW)


def delivered(vendor: Vendor[Any], config: SourceConfig, body: bytes) -> Delivery:
    """`body` delivered to `config`'s source at NOW, authenticated as the vendor does it."""
    headers = vendor.kit.reauthenticate(config, simulated(vendor, config).headers, body, NOW)
    return Delivery(body=body, headers=headers)


def authenticated(vendor: Vendor[Any], config: SourceConfig, delivery: Delivery) -> Event:
    vendor.authenticate(config, delivery, now=NOW, tolerance_s=TOLERANCE)
    return vendor.parse(delivery)


def assert_whole(event: Event) -> None:
    """What every parsed event holds: a key; a call id exactly when it is about a call."""
    assert event.event_key
    if event.type is None:
        assert (event.call_id, event.fetchable) == (None, False)
    else:
        assert isinstance(event.call_id, str)
        assert event.call_id
    if event.occurred_at is not None:
        parsed = datetime.strptime(event.occurred_at, "%Y-%m-%dT%H:%M:%S.%fZ")
        assert event.occurred_at == parsed.isoformat(timespec="milliseconds") + "Z"


def target(vendor: Vendor[Any]) -> str:
    """What a vendor client's errors name as their target."""
    return f"{vendor.name} API"


TYPES = [(name, kind) for name in NAMES for kind in VENDORS[name].kit.simulated_types]
FIXTURES = [(name, fixture) for name in NAMES for fixture in fixture_names(VENDORS[name])]


# --- the source table ----------------------------------------------------------------------


def test_secrets_stay_secret(vendor: Vendor[Any]) -> None:
    """Each secret the kit makes fresh for a source (the API key among them) is masked when
    the config is dumped and shows in no form in its repr, str or JSON."""
    kit = vendor.kit
    secrets, other = kit.new_secrets(), kit.new_secrets()
    fresh = sorted(key for key in secrets if secrets[key] != other[key])
    assert "api_key" in fresh
    config = configured(vendor, secrets=secrets)
    dumped = config.model_dump(mode="json")
    assert {key: dumped[key] for key in fresh} == dict.fromkeys(fresh, "**********")
    shown = (repr(config), str(config), config.model_dump_json())
    for form in {*(secrets[key] for key in fresh), *kit.leak_forms(config)}:
        assert not [text for text in shown if form in text]


def invalid_tables() -> Iterator[Any]:
    """Changes to a valid table that every vendor refuses, with the key they name (a None
    value removes the key): a missing API key, a URL that is not http(s), a rate of 0,
    another vendor's name, and any key of another vendor or of none."""
    keys = {key for vendor in VENDORS.values() for key in vendor.config_model.model_fields}
    for name in NAMES:
        foreign = sorted(keys - set(VENDORS[name].config_model.model_fields))
        changes: list[dict[str, Any]] = [
            {"api_key": None},
            {"api_base_url": "ftp://x"},
            {"api_base_url": "api.example.com"},
            {"rate_limit_per_s": 0},
            {"vendor": f"not-{name}"},
            *({"vendor": other} for other in NAMES if other != name),
            {"no_such_key": "x"},
            *({key: "x"} for key in foreign),
        ]
        for change in changes:
            ((key, value),) = change.items()
            yield pytest.param(name, change, key, id=f"{name}-{key}={value}")


@pytest.mark.parametrize(("vendor_name", "changes", "location"), list(invalid_tables()))
def test_invalid_tables_name_the_key(
    vendor_name: str, changes: dict[str, Any], location: str
) -> None:
    vendor = VENDORS[vendor_name]
    example = vendor.kit.example_source(vendor.kit.new_secrets(), NO_API)
    table = {key: value for key, value in {**example, **changes}.items() if value is not None}
    with pytest.raises(ValidationError) as raised:
        vendor.config_model.model_validate(table)
    assert location in {str(error["loc"][0]) for error in raised.value.errors() if error["loc"]}


# --- deliveries ----------------------------------------------------------------------------


@pytest.mark.parametrize(("vendor_name", "vendor_type"), TYPES)
def test_every_simulated_type_has_a_fixture(vendor_name: str, vendor_type: str) -> None:
    """A real delivery of each type the kit simulates: `<type>.json` or `<type>__*.json`."""
    folder = VENDORS[vendor_name].kit.fixtures
    pattern = glob.escape(vendor_type)
    found = [*folder.glob(f"{pattern}.json"), *folder.glob(f"{pattern}__*.json")]
    assert found, f"no {vendor_type}.json or {vendor_type}__<variant>.json in {folder}"


@pytest.mark.parametrize(("vendor_name", "fixture"), FIXTURES)
def test_fixture_authenticates_and_parses(vendor_name: str, fixture: str) -> None:
    """Every fixture, authenticated as the vendor does it, parses into an event of the type
    its file name says, with the body as its payload."""
    vendor = VENDORS[vendor_name]
    config = configured(vendor)
    body = (vendor.kit.fixtures / f"{fixture}.json").read_bytes()
    delivery = delivered(vendor, config, body)
    event = authenticated(vendor, config, delivery)
    assert (event.vendor_type, event.payload) == (fixture.split("__")[0], orjson.loads(body))
    assert_whole(event)
    assert vendor.parse(delivery) == event


@pytest.mark.parametrize(("vendor_name", "vendor_type"), TYPES)
def test_every_simulated_type_round_trips(vendor_name: str, vendor_type: str) -> None:
    """In every authentication scheme the vendor delivers in (`kit.auth_schemes`), a
    simulated delivery authenticates against the source and parses back into its type,
    about its call; a vendor retry (the same delivery built again, or its bytes
    authenticated again later) has the same key."""
    vendor = VENDORS[vendor_name]
    kit = vendor.kit
    config = configured(vendor)
    call = kit.simulated_call(None, NOW)
    schemes = kit.auth_schemes(config)
    assert schemes
    for scheme in schemes:
        delivery = kit.simulate_delivery(scheme, vendor_type, call, NOW)
        event = authenticated(vendor, config, delivery)
        assert (event.vendor_type, event.payload) == (vendor_type, orjson.loads(delivery.body))
        assert_whole(event)
        if event.fetchable:
            assert event.call_id == call.call_id
        if vendor_type == kit.completed_type:
            assert (event.type, event.call_id, event.fetchable) == (
                EventType.COMPLETED,
                call.call_id,
                True,
            )
        later = NOW + 60
        resent = Delivery(
            body=delivery.body,
            headers=kit.reauthenticate(config, delivery.headers, delivery.body, later),
        )
        for again, at in (
            (kit.simulate_delivery(scheme, vendor_type, call, NOW), NOW),
            (resent, later),
        ):
            vendor.authenticate(config, again, now=at, tolerance_s=TOLERANCE)
            assert vendor.parse(again).event_key == event.event_key


def test_each_simulated_type_is_an_event_of_its_own(vendor: Vendor[Any]) -> None:
    """No two types about one call share a key: deduplication would drop one of them."""
    kit = vendor.kit
    config = configured(vendor)
    call = kit.simulated_call(None, NOW)
    keys = {
        authenticated(vendor, config, kit.simulate_delivery(config, kind, call, NOW)).event_key
        for kind in kit.simulated_types
    }
    assert len(keys) == len(kit.simulated_types)
    assert set(kit.call_sequence) <= set(kit.simulated_types)
    assert kit.completed_type in kit.call_sequence


def unusable_bodies() -> Iterator[Any]:
    deep = b'{"a": ' * MAX_PAYLOAD_DEPTH + b"[1]" + b"}" * MAX_PAYLOAD_DEPTH
    bodies: dict[str, tuple[bytes | None, str]] = {
        "not-json": (b"{not json", "body is not JSON"),
        "empty": (b"", "body is not JSON"),
        "truncated": (None, "body is not JSON"),  # the first half of a simulated delivery
        "array": (b"[1, 2]", "body is not a JSON object"),
        "string": (b'"call"', "body is not a JSON object"),
        "null": (b"null", "body is not a JSON object"),
        "too-deep": (deep, f"body nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
    }
    for name in NAMES:
        for kind, (body, reason) in bodies.items():
            yield pytest.param(name, body, reason, id=f"{name}-{kind}")


@pytest.mark.parametrize(("vendor_name", "body", "reason"), list(unusable_bodies()))
def test_unusable_payloads_are_bad(vendor_name: str, body: bytes | None, reason: str) -> None:
    """Authenticated, but no JSON object to read: `BadPayload` with the reason."""
    vendor = VENDORS[vendor_name]
    config = configured(vendor)
    if body is None:
        whole = simulated(vendor, config).body
        body = whole[: len(whole) // 2]
    assert bad_payload_reason(vendor, config, delivered(vendor, config, body), NOW) == reason


def test_bad_credentials_are_refused(vendor: Vendor[Any]) -> None:
    """A delivery whose authentication headers are missing, empty or altered is refused,
    and no refusal shows a secret of the source."""
    kit = vendor.kit
    config = configured(vendor)
    good = simulated(vendor, config)
    present = sorted(kit.auth_headers & set(good.headers))
    assert present, "a simulated delivery carries none of kit.auth_headers"

    def without(*names: str) -> dict[str, str]:
        return {key: value for key, value in good.headers.items() if key not in names}

    tries = {"a delivery without authentication headers": without(*kit.auth_headers)}
    for header in present:
        credential = good.headers[header]
        tries[f"a delivery without {header}"] = without(header)
        tries[f"an empty {header}"] = {**good.headers, header: ""}
        tries[f"{header} with a character more"] = {**good.headers, header: credential + "x"}
        tries[f"{header} with a character less"] = {**good.headers, header: credential[:-1]}
    for what, headers in tries.items():
        refused = refusal(vendor, config, Delivery(body=good.body, headers=headers), NOW, what)
        assert not [form for form in kit.leak_forms(config) if form in str(refused)], what
    vendor.authenticate(config, good, now=NOW, tolerance_s=TOLERANCE)


def test_wrong_secret_in_config_is_refused(vendor: Vendor[Any]) -> None:
    """A delivery authenticated for another source's secrets (rotated, or a copy-paste
    mistake) is refused without showing either source's secrets."""
    kit = vendor.kit
    sender, receiver = configured(vendor), configured(vendor)
    refused = refusal(vendor, receiver, simulated(vendor, sender), NOW, "another source's")
    assert not [
        form
        for form in (*kit.leak_forms(sender), *kit.leak_forms(receiver))
        if form in str(refused)
    ]


def test_only_a_timestamped_delivery_goes_stale(vendor: Vendor[Any]) -> None:
    """Where the authentication covers a time (`kit.timestamped`), a delivery is refused
    outside the tolerance; where it does not, it stays valid (a vendor retry a day later)."""
    config = configured(vendor)
    delivery = simulated(vendor, config)
    for edge in (NOW - TOLERANCE, NOW + TOLERANCE):
        vendor.authenticate(config, delivery, now=edge, tolerance_s=TOLERANCE)
    if vendor.kit.timestamped:
        for stale in (NOW - TOLERANCE - 1, NOW + TOLERANCE + 1, NOW + DAY):
            refusal(vendor, config, delivery, stale, f"a delivery checked at {stale}")
    else:
        vendor.authenticate(config, delivery, now=NOW + DAY, tolerance_s=1)


# --- records -------------------------------------------------------------------------------


@pytest.mark.parametrize(("vendor_name", "fixture"), FIXTURES)
def test_record_from_event(vendor_name: str, fixture: str) -> None:
    """Every fixture about a call maps to a record of that call, observed when the event
    occurred (or was received), with the event's own data under its type; an event about
    no call has no record."""
    vendor = VENDORS[vendor_name]
    config = configured(vendor)
    body = (vendor.kit.fixtures / f"{fixture}.json").read_bytes()
    event = authenticated(vendor, config, delivered(vendor, config, body))
    if event.type is None:
        with pytest.raises(ValueError, match="needs an event about a call"):
            vendor.record_from_event(SOURCE, event, RECEIVED)
        return
    record = vendor.record_from_event(SOURCE, event, RECEIVED)
    assert (record.source, record.vendor, record.call_id) == (SOURCE, vendor.name, event.call_id)
    assert record.last_event == LastEvent(
        type=event.type.value, key=event.event_key, received_at=RECEIVED
    )
    assert record.observed_at == (event.occurred_at or RECEIVED)
    assert event.vendor_type in record.vendor_data
    assert (record.enrichment, record.revision) == (None, 0)


def test_record_from_event_needs_an_event_about_a_call(vendor: Vendor[Any]) -> None:
    event = vendor.parse(simulated(vendor, configured(vendor)))
    with pytest.raises(ValueError, match="needs an event about a call"):
        vendor.record_from_event(SOURCE, dataclasses.replace(event, type=None), RECEIVED)


def test_record_from_api(vendor: Vendor[Any]) -> None:
    """The simulated call, fetched with its extras or listed alone (reconcile), maps to a
    completed, enriched record of that call; a call object without its id is a bug."""
    call = vendor.kit.simulated_call(None, NOW)
    for fetched in (Fetched(call=call.call, extras=call.extras), Fetched(call=call.call)):
        record = vendor.record_from_api(SOURCE, fetched, OBSERVED)
        assert (record.source, record.vendor, record.call_id) == (SOURCE, vendor.name, call.call_id)
        assert (record.status, record.enrichment) == (CallStatus.COMPLETED, "api")
        assert (record.observed_at, record.vendor_data["call"]) == (OBSERVED, call.call)
    without_id = {key: value for key, value in call.call.items() if value != call.call_id}
    with pytest.raises(ValueError, match="without"):
        vendor.record_from_api(SOURCE, Fetched(call=without_id), OBSERVED)


def test_the_call_sequence_and_the_api_converge(vendor: Vendor[Any]) -> None:
    """The events the vendor sends about one answered call and Get Call's answer merge into
    one completed, enriched record, whatever order they arrive in."""
    kit = vendor.kit
    config = configured(vendor)
    call = kit.simulated_call(None, NOW)
    observations = [
        vendor.record_from_event(
            SOURCE,
            authenticated(vendor, config, kit.simulate_delivery(config, kind, call, NOW)),
            RECEIVED,
        )
        for kind in kit.call_sequence
    ]
    api = vendor.record_from_api(SOURCE, Fetched(call=call.call, extras=call.extras), OBSERVED)
    observations.append(api)
    for order in (observations, observations[::-1]):
        merged = reduce(merge, order, None)
        assert isinstance(merged, CallRecord)
        assert (merged.call_id, merged.status, merged.enrichment) == (
            call.call_id,
            CallStatus.COMPLETED,
            "api",
        )
        assert merged.recordings == api.recordings


# --- the vendor's API, simulated -----------------------------------------------------------


def noting_errors(app: ASGIApp, errors: list[tuple[int, str | None]]) -> ASGIApp:
    """`app`, noting each error it answers: the status and the vendor's error code in the
    body, as a vendor client reads it (`json_error_code`)."""

    async def noted(scope: Scope, receive: Receive, send: Send) -> None:
        status, body = 0, bytearray()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    answer = httpx.Response(status, content=bytes(body))
                    errors.append((status, json_error_code(answer)))
            await send(message)

        await app(scope, receive, sending)

    return noted


@dataclass
class SimulatedApi:
    """A vendor's simulated API on a loopback port, and the table of a source using it."""

    vendor: Vendor[Any]
    table: dict[str, Any]
    state: VendorSimulatorState
    http: httpx.AsyncClient
    errors: list[tuple[int, str | None]]

    def client(self, **changes: Any) -> VendorClient:
        config = self.vendor.config_model.model_validate({**self.table, **changes})
        return self.vendor.client(config, self.http)

    def known_call(self, now: float = NOW) -> SimulatedCall:
        """A new call the API knows, as the kit makes one at `now`."""
        call = self.vendor.kit.simulated_call(None, now)
        register(self.state, call)
        return call

    def listed_id(self, call: Mapping[str, Any]) -> str:
        """The id of a listed call, as reconcile reads it; it must be the Get Call object."""
        call_id = self.vendor.record_from_api(SOURCE, Fetched(call=call), OBSERVED).call_id
        assert call == self.state.calls[call_id]
        return call_id

    def created(self, call: SimulatedCall) -> float:
        """When `call` was created, as its record tells (unix seconds)."""
        record = self.vendor.record_from_api(SOURCE, Fetched(call=call.call), OBSERVED)
        assert record.created_at is not None
        moment = datetime.strptime(record.created_at, "%Y-%m-%dT%H:%M:%S.%fZ")
        return moment.replace(tzinfo=UTC).timestamp()

    async def listing(self, since: float, until: float) -> list[str]:
        """The ids of the calls List Calls yields for [since, until)."""
        calls = self.client().list_calls(*window(since, until))
        return [self.listed_id(call) async for call in calls]

    def answered(self, status: int) -> str:
        """The reason a client gives for the API's last error: the status and the vendor's
        error code from the answer."""
        assert self.errors, "the API answered no error"
        last, code = self.errors[-1]
        assert (last, bool(code)) == (status, True)
        return f"{target(self.vendor)} answered HTTP {status} ({code})"


@pytest.fixture
def api(vendor: Vendor[Any], http: httpx.AsyncClient) -> Iterator[SimulatedApi]:
    kit = vendor.kit
    secrets = kit.new_secrets()
    state = VendorSimulatorState(api_key=secrets["api_key"])
    errors: list[tuple[int, str | None]] = []
    with ServerThread(noting_errors(kit.simulator_app(state), errors)) as server:
        yield SimulatedApi(vendor, kit.example_source(secrets, server.url), state, http, errors)


def assert_fetched(got: Fetched, call: SimulatedCall) -> None:
    """`got` is what the simulated API knows of `call`: its Get Call object, and extras as
    the simulator holds them."""
    assert got.call == call.call
    assert got.notes == {}
    assert {kind: call.extras.get(kind) for kind in got.extras} == got.extras


@pytest.mark.parametrize(("retry_after", "expected"), [(7.0, 7.0), (0.5, 0.5), (None, None)])
async def test_rate_limited(
    api: SimulatedApi, retry_after: float | None, expected: float | None
) -> None:
    call = api.known_call()
    api.state.faults.rate_limited = 1
    api.state.faults.retry_after = retry_after
    client = api.client()
    with pytest.raises(RateLimited) as raised:
        await client.fetch(call.call_id, EventType.COMPLETED)
    assert (raised.value.status_code, raised.value.retry_after) == (429, expected)
    assert raised.value.target == target(api.vendor)
    assert_fetched(await client.fetch(call.call_id, EventType.COMPLETED), call)


async def test_not_found_right_after_the_event_is_not_ready_yet(api: SimulatedApi) -> None:
    """A call the API does not know yet (the event came first) is worth retrying."""
    call = api.known_call()
    api.state.faults.not_found_first = 1
    client = api.client()
    with pytest.raises(NotReadyYet) as raised:
        await client.fetch(call.call_id, EventType.COMPLETED)
    assert raised.value.status_code == 404
    assert raised.value.reason == api.answered(404)
    assert_fetched(await client.fetch(call.call_id, EventType.COMPLETED), call)
    unknown = api.vendor.kit.simulated_call(None, NOW).call_id
    with pytest.raises(NotReadyYet):
        await client.fetch(unknown, EventType.COMPLETED)


@pytest.mark.parametrize("wrong_key", [False, True])
async def test_unauthorized_is_permanent_and_never_shows_the_key(
    api: SimulatedApi, wrong_key: bool
) -> None:
    call = api.known_call()
    if wrong_key:
        client = api.client(api_key="not-the-key")
    else:
        api.state.faults.unauthorized = True
        client = api.client()
    with pytest.raises(PermanentError) as raised:
        await client.fetch(call.call_id, EventType.COMPLETED)
    assert (raised.value.status_code, raised.value.target) == (401, target(api.vendor))
    assert raised.value.reason == api.answered(401)
    assert api.state.api_key not in str(raised.value)
    assert "not-the-key" not in str(raised.value)


def malformed_answers() -> Iterator[Any]:
    answers: dict[str, tuple[bytes, str, str | None]] = {
        "html": (b"<html><body>Bad gateway</body></html>", "text/html", "not JSON"),
        "truncated": (b'{"data": {"id": "x', "application/json", "not JSON"),
        "empty": (b"", "application/json", "not JSON"),
        "array": (b"[]", "application/json", "not an object"),
        "string": (b'"ok"', "application/json", "not an object"),
        "no-call": (b"{}", "application/json", None),
    }
    for name in NAMES:
        for kind, answer in answers.items():
            yield pytest.param(name, *answer, id=f"{name}-{kind}")


@pytest.mark.parametrize(
    ("vendor_name", "body", "content_type", "reason"), list(malformed_answers())
)
async def test_malformed_answers_are_retryable(
    http: httpx.AsyncClient, vendor_name: str, body: bytes, content_type: str, reason: str | None
) -> None:
    """An API that answers 200 with something other than a call (a proxy's error page, a
    cut-off body) may answer properly next time."""

    async def answer(request: Request) -> Response:
        return Response(body, media_type=content_type)

    vendor = VENDORS[vendor_name]
    call_id = vendor.kit.simulated_call(None, NOW).call_id
    with ServerThread(Starlette(routes=[Route("/{path:path}", answer)])) as server:
        client = vendor.client(configured(vendor, server.url), http)
        with pytest.raises(RetryableError, match=reason) as raised:
            await client.fetch(call_id, EventType.COMPLETED)
    assert raised.value.target == target(vendor)


async def test_list_calls_pages_through_every_call_once(api: SimulatedApi) -> None:
    """250 calls made 10 s apart (more than a page), and five just before and after: the
    window from the first's creation to just after the last's lists each of the 250 once,
    as its Get Call object. Windows are half-open on the creation time the calls' records
    tell: adjacent ones split the calls, the call on the edge in the later one."""
    calls = [api.known_call(NOW + i * 10) for i in range(-5, 255)]
    inside = calls[5:-5]
    ids = sorted(call.call_id for call in inside)
    since, middle, last = (api.created(call) for call in (inside[0], inside[125], inside[-1]))
    until = last + 1
    listed = await api.listing(since, until)
    assert (len(listed), sorted(listed)) == (len(ids), ids)
    first, second = await api.listing(since, middle), await api.listing(middle, until)
    assert sorted(first) == sorted(call.call_id for call in inside[:125])
    assert sorted(second) == sorted(call.call_id for call in inside[125:])


async def test_list_calls_empty_window(api: SimulatedApi) -> None:
    for i in range(20):
        api.known_call(NOW + i * 10)
    for since, until in ((NOW - 30 * DAY, NOW - 29 * DAY), (NOW + 29 * DAY, NOW + 30 * DAY)):
        assert await api.listing(since, until) == []


async def test_the_sandbox_simulator_makes_up_an_unknown_call(api: SimulatedApi) -> None:
    """Sandbox mode relies on it: with `autocreate` on, any call id the API is asked about
    becomes a call, which the client fetches like any other."""
    api.state.autocreate = True
    call_id = api.vendor.kit.simulated_call(None, NOW).call_id
    got = await api.client().fetch(call_id, EventType.COMPLETED)
    assert got.call == api.state.calls[call_id]
    assert api.vendor.record_from_api(SOURCE, got, OBSERVED).call_id == call_id
