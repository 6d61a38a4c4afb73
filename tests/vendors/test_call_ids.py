"""Call ids that are not of the vendor's format never reach its API.

A call id becomes a path segment of a vendor API request that carries the API key (`..`
would turn `GET /v3/calls/..` into `GET /v3/`): the ingress refuses such an id with a 400
and enqueues nothing, and a vendor client refuses to build a URL with one. Real ids, as
each vendor's fixtures and docs show them, still pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.config import Config
from callhook.errors import PermanentError
from callhook.events import EventType
from callhook.http import make_client
from callhook.vendors import VENDORS
from callhook.vendors.kit import SimulatedCall
from service.app import create_app
from tests.servers import ServerThread
from tests.service.conftest import ingress_config
from tests.vendors.test_client_faults import client

#: ids that would name another path (or no call at all) once in a URL
PATH_TRICKS = [
    "..",
    ".",
    "a/b",
    "x%2F..",
    "../../v1/agent",
    "AC1?x=1",
    "AC1#x",
    "AC1 2",
    "AC1\tx",
    "AC1\x00",
    "AC\u0661",  # an Arabic-Indic digit: a \d, but no letter or digit Quo uses
    "AC" + "1" * 300,
]

#: real-looking ids (from the fixtures and the vendors' docs) that must stay accepted
REAL_IDS = {
    "cometchat": [
        "v1.us.2080843fb1d0b4a9.1696934199c5f8e1b0a94d4b7e2f3a6c8d0e1f2a3b4c5d6e7f",
        "v1.eu.31a7e99b2c4d5e6f.1696934692a1b2c3d4e5f6",
        # a Calls SDK session named by the app (a group's guid)
        "support-room_42",
    ],
    "openphone": ["AC3fe91c2b7d4e4a0c9b1f5e6d7a8b9c0d", "AC123abc"],
    "diga": ["7c1e4b2a-9d3f-4e5a-8b6c-0d1e2f3a4b5c", "7C1E4B2A-9D3F-4E5A-8B6C-0D1E2F3A4B5C"],
}

#: per vendor, the deliveries whose call id comes from the body (every place one is read)
ID_BEARING_TYPES = {
    "cometchat": [
        "call_initiated",
        "call_started",
        "call_ended",
        "recording_generated",
        "transcription_generated",
    ],
    "openphone": [
        "call.ringing",
        "call.completed",
        "call.recording.completed",
        "call.summary.completed",
        "call.transcript.completed",
        "call.voicemail.completed",
    ],
    "diga": ["call_finished"],
}
CASES = [(vendor, kind) for vendor, kinds in ID_BEARING_TYPES.items() for kind in kinds]


class Ingress:
    def __init__(self, url: str, config: Config) -> None:
        self.url = url
        self.config = config

    def post(self, source: str, vendor_type: str, call_id: str) -> httpx.Response:
        """A delivery of `vendor_type` about call `call_id`, signed by the vendor's
        simulator (so only the id can be wrong), posted over HTTP."""
        vendor = VENDORS[source]
        now = time.time()
        call: SimulatedCall = vendor.kit.simulated_call(call_id, now=now)
        delivery = vendor.kit.simulate_delivery(
            self.config.sources[source], vendor_type, call, now=now
        )
        assert call_id.encode() in delivery.body or orjson.dumps(call_id) in delivery.body
        return httpx.post(
            f"{self.url}/webhooks/{source}",
            content=delivery.body,
            headers=dict(delivery.headers),
            timeout=10,
        )


@pytest.fixture
def ingress(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Ingress]:
    config = ingress_config(tmp_path, redis_server_url, redis_namespace)
    with ServerThread(create_app(config), lifespan=True) as server:
        yield Ingress(server.url, config)


def stored(client: redis.Redis, namespace: str) -> list[bytes]:
    """Every key the ingress wrote: dedupe marks, queues, messages."""
    return sorted(client.scan_iter(f"{namespace}:*"))


@pytest.mark.parametrize("call_id", PATH_TRICKS)
@pytest.mark.parametrize(("source", "vendor_type"), CASES)
def test_a_delivery_naming_a_call_id_of_another_shape_is_400_and_nothing_is_enqueued(
    ingress: Ingress,
    redis_sync: redis.Redis,
    redis_namespace: str,
    source: str,
    vendor_type: str,
    call_id: str,
) -> None:
    response = ingress.post(source, vendor_type, call_id)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] == "bad_payload"
    assert " is not a" in answer["detail"]
    assert repr(call_id[:40]) in answer["detail"]
    assert stored(redis_sync, redis_namespace) == []


@pytest.mark.parametrize(
    ("source", "call_id"), [(vendor, cid) for vendor, ids in REAL_IDS.items() for cid in ids]
)
def test_real_looking_call_ids_are_accepted(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str, source: str, call_id: str
) -> None:
    for vendor_type in ID_BEARING_TYPES[source]:
        response = ingress.post(source, vendor_type, call_id)
        assert response.status_code == 200, (vendor_type, response.text)
        assert response.json()["status"] == "accepted"
    assert stored(redis_sync, redis_namespace) != []


@pytest.mark.parametrize("call_id", [*PATH_TRICKS, "AC1/../../v1/phone-numbers"])
@pytest.mark.parametrize("vendor_name", sorted(VENDORS))
async def test_a_client_never_builds_a_url_with_such_an_id(vendor_name: str, call_id: str) -> None:
    """Defence in depth (an id from an older queue message, a bug upstream): the fetch is a
    `PermanentError` naming the id, so the work dead-letters with that reason, and the
    vendor's server sees no request at all."""
    requested: list[bytes] = []

    async def anything(request: Request) -> Response:
        requested.append(request.scope["raw_path"])
        return JSONResponse({}, status_code=404)

    app = Starlette(routes=[Route("/{path:path}", anything)])
    with ServerThread(app) as server:
        async with make_client() as http:
            with pytest.raises(PermanentError) as raised:
                await client(vendor_name, server.url, http).fetch(call_id, EventType.COMPLETED)
    assert "refusing to request call id" in raised.value.reason
    assert requested == []
