"""POST /webhooks/{source} over real HTTP against the real Redis, for every vendor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from callhook.events import Delivery
from callhook.queues import ENRICH_QUEUE, messages_key, queue_key
from callhook.vendors import VENDORS
from tests.servers import RedisServer, free_port
from tests.service.conftest import Ingress, ingress_config, serve_with

CASES = [
    (name, vendor_type) for name, v in VENDORS.items() for vendor_type in v.kit.simulated_types
]


def delivery(ingress: Ingress, source: str, vendor_type: str, now: float | None = None) -> Delivery:
    vendor = VENDORS[ingress.config.sources[source].vendor]
    now = time.time() if now is None else now
    call = vendor.kit.simulated_call(None, now=now)
    return vendor.kit.simulate_delivery(ingress.config.sources[source], vendor_type, call, now=now)


def post(ingress: Ingress, source: str, d: Delivery, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{ingress.url}/webhooks/{source}",
        content=d.body,
        headers={**dict(d.headers), **headers},
        timeout=10,
    )


def enqueued(client: redis.Redis, namespace: str) -> list[dict[str, object]]:
    ids = client.lrange(queue_key(namespace, ENRICH_QUEUE), 0, -1)
    raws = client.hmget(messages_key(namespace, ENRICH_QUEUE), ids) if ids else []
    return [orjson.loads(raw)["kwargs"] for raw in raws if raw is not None]


@pytest.mark.parametrize(("source", "vendor_type"), CASES)
def test_every_event_type_is_accepted_once(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str, source: str, vendor_type: str
) -> None:
    d = delivery(ingress, source, vendor_type)
    event = VENDORS[source].parse(d)
    first = post(ingress, source, d)
    assert first.status_code == 200, first.text
    if event.type is None:
        assert first.json()["status"] == "ignored"
        assert enqueued(redis_sync, redis_namespace) == []
        return
    assert first.json() == {"status": "accepted", "event_key": event.event_key}
    again = post(ingress, source, d)
    assert again.json() == {"status": "duplicate", "event_key": event.event_key}
    (message,) = enqueued(redis_sync, redis_namespace)
    assert message["event_key"] == event.event_key
    assert message["type"] == event.type.value
    assert message["call_id"] == event.call_id
    assert message["source"] == source
    assert message["payload"] == orjson.loads(d.body)


@pytest.mark.parametrize("source", sorted(VENDORS))
def test_wrong_credentials_and_missing_headers_are_401(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str, source: str
) -> None:
    d = delivery(ingress, source, VENDORS[source].kit.simulated_types[0])
    bare = Delivery(body=d.body, headers={"content-type": "application/json"})
    assert post(ingress, source, bare).status_code == 401
    wrong = {key: "x" + value for key, value in d.headers.items() if key != "content-type"}
    response = post(ingress, source, d, **wrong)
    assert response.status_code == 401
    assert response.json() == {"status": "unauthenticated"}
    assert enqueued(redis_sync, redis_namespace) == []


def test_tampered_signed_body_is_401(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str
) -> None:
    # Only OpenPhone/Quo signs the body; CometChat (Basic) and Diga (Bearer) cannot notice.
    for vendor_type in ("call.completed", "call.ringing"):
        d = delivery(ingress, "openphone", vendor_type)
        tampered = Delivery(body=d.body.replace(b"}", b' , "x": 1}', 1), headers=d.headers)
        assert post(ingress, "openphone", tampered).status_code == 401
    assert enqueued(redis_sync, redis_namespace) == []


def test_stale_and_future_signed_deliveries_are_401(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str
) -> None:
    tolerance = ingress.config.ingress.timestamp_tolerance_s
    for offset in (-tolerance - 60, tolerance + 60):
        d = delivery(ingress, "openphone", "call.completed", now=time.time() + offset)
        assert post(ingress, "openphone", d).status_code == 401
    assert enqueued(redis_sync, redis_namespace) == []


@pytest.mark.parametrize("body", [b"{not json", b'{"truncated": ', b"[1, 2]", b'"text"', b""])
def test_bad_json_is_400(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str, body: bytes
) -> None:
    # Diga authenticates by bearer token, so the body reaches the parser.
    d = delivery(ingress, "diga", VENDORS["diga"].kit.simulated_types[0])
    response = post(ingress, "diga", Delivery(body=body, headers=d.headers))
    assert response.status_code == 400
    assert response.json()["status"] == "bad_payload"
    assert enqueued(redis_sync, redis_namespace) == []


def test_no_call_identity_is_400(ingress: Ingress) -> None:
    d = delivery(ingress, "diga", VENDORS["diga"].kit.simulated_types[0])
    response = post(ingress, "diga", Delivery(body=b'{"status": "completed"}', headers=d.headers))
    assert response.status_code == 400


def test_unknown_source_is_404(ingress: Ingress) -> None:
    response = httpx.post(f"{ingress.url}/webhooks/nobody", content=b"{}")
    assert response.status_code == 404
    assert response.json()["status"] == "not_found"


def test_source_with_empty_secret_is_404(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = ingress_config(tmp_path, redis_server_url, redis_namespace)
    raw_sources = {name: s.model_dump() for name, s in config.sources.items()}
    assert raw_sources  # the sandbox has all three
    diga = config.sources["diga"].model_copy(update={"webhook_token": ""})
    disabled = config.model_copy(update={"sources": {**config.sources, "diga": diga}})
    with serve_with(disabled) as server:
        assert httpx.post(f"{server.url}/webhooks/diga", content=b"{}").status_code == 404


def test_body_over_the_cap_is_413_without_reading_it(
    ingress: Ingress, redis_sync: redis.Redis, redis_namespace: str
) -> None:
    d = delivery(ingress, "diga", VENDORS["diga"].kit.simulated_types[0])
    declared = post(ingress, "diga", Delivery(body=b"x" * 70000, headers=d.headers))
    assert declared.status_code == 413

    def endless() -> Iterator[bytes]:  # chunked, no Content-Length: refused while streaming
        for _ in range(10_000):
            yield b"y" * 8192

    streamed = httpx.post(
        f"{ingress.url}/webhooks/diga",
        content=endless(),
        headers={k: v for k, v in d.headers.items() if k != "content-length"},
        timeout=10,
    )
    assert streamed.status_code == 413
    assert enqueued(redis_sync, redis_namespace) == []


def test_redis_down_is_503_then_the_retry_is_accepted(tmp_path: Path, redis_namespace: str) -> None:
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    config = ingress_config(tmp_path, server.url, redis_namespace, redis={"accept_timeout_s": 0.5})
    try:
        with serve_with(config) as ingress_server:
            ingress = Ingress(ingress_server.url, config)
            d = delivery(ingress, "openphone", "call.completed")
            server.stop()
            down = post(ingress, "openphone", d)
            assert down.status_code == 503
            assert down.headers["retry-after"] == "5"
            assert httpx.get(f"{ingress.url}/readyz").status_code == 503
            server.start()
            up = post(ingress, "openphone", d)  # the vendor's retry
            assert up.status_code == 200
            assert up.json()["status"] == "accepted"
            assert httpx.get(f"{ingress.url}/readyz").status_code == 200
            client = redis.Redis.from_url(server.url)
            assert len(enqueued(client, redis_namespace)) == 1
            client.close()
    finally:
        server.stop()


def test_redis_too_slow_is_503_fast_and_the_retry_lands_once(
    tmp_path: Path, redis_namespace: str
) -> None:
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    config = ingress_config(tmp_path, server.url, redis_namespace, redis={"accept_timeout_s": 0.3})
    admin = redis.Redis.from_url(server.url)
    try:
        with serve_with(config) as ingress_server:
            ingress = Ingress(ingress_server.url, config)
            d = delivery(ingress, "openphone", "call.completed")
            admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # Redis stalls 1.5 s
            started = time.monotonic()
            slow = post(ingress, "openphone", d)
            assert slow.status_code == 503
            assert slow.headers["retry-after"] == "5"
            assert time.monotonic() - started < 1.0, "the answer waits for the bound, not Redis"
            time.sleep(1.5)
            # Redis may have run the stalled accept after we gave up: the retry then finds
            # it a duplicate. Either way the event is stored exactly once.
            retried = post(ingress, "openphone", d)
            assert retried.status_code == 200
            assert retried.json()["status"] in ("accepted", "duplicate")
            assert len(enqueued(admin, redis_namespace)) == 1
    finally:
        admin.close()
        server.stop()


def test_health_metrics_openapi(ingress: Ingress) -> None:
    assert httpx.get(f"{ingress.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{ingress.url}/readyz").json()
    assert ready == {"status": "ok", "redis_primary": ready["redis_primary"]}
    assert ready["redis_primary"] == urlsplit(ingress.config.redis.url).netloc  # 127.0.0.1:6379
    labels = {"source": "diga", "outcome": "accepted"}
    before = REGISTRY.get_sample_value("callhook_webhooks_total", labels) or 0.0
    d = delivery(ingress, "diga", VENDORS["diga"].kit.simulated_types[0])
    post(ingress, "diga", d)
    text = httpx.get(f"{ingress.url}/metrics").text
    assert REGISTRY.get_sample_value("callhook_webhooks_total", labels) == before + 1
    assert 'callhook_webhooks_total{outcome="accepted",source="diga"}' in text
    assert 'callhook_queue_depth{queue="callhook.enrich"}' in text
    spec = httpx.get(f"{ingress.url}/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == {
        "/webhooks/{source}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
