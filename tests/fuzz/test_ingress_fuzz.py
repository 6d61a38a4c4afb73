"""Fuzz POST /webhooks/{source} for every vendor: hostile variations of realistic signed
deliveries through the real ingress app and the real Redis.

Whatever arrives, the ingress must answer within a bound, never with a 5xx, enqueue nothing
unless it answers "accepted" (and then exactly one message), and never show a secret in an
answer or a log line. Where the contract fixes the answer (a broken signature is 401, an
oversized body 413, a validly signed non-object 400) the exact status is checked too.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from callhook.events import Delivery
from callhook.vendors import VENDORS
from tests.fuzz.conftest import MAX_BODY_BYTES, SECRET_TEXTS, SOURCES, FuzzIngress
from tests.fuzz.mutations import (
    BODY_MUTATIONS,
    HEADER_MUTATIONS,
    Headers,
    Mutation,
    mutate_body,
    mutate_headers,
    pick,
)

#: deliveries per Hypothesis example, and examples per vendor: 3 x 420 x 8 >= 10,000
BATCH = 8
EXAMPLES_PER_VENDOR = 420
MIN_REQUESTS_PER_VENDOR = EXAMPLES_PER_VENDOR * BATCH
TOTAL_REQUESTS_WANTED = 10_000
assert MIN_REQUESTS_PER_VENDOR * len(VENDORS) >= TOTAL_REQUESTS_WANTED

ALLOWED_STATUSES = frozenset({200, 400, 401, 413})
TOLERANCE_S = 300

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_VENDOR,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
    # no shrinking: every request is real I/O, and the assertion messages name the mutation
    phases=(Phase.explicit, Phase.generate),
)


def realistic(source: str, data: st.DataObject) -> Delivery:
    """A fresh delivery of one of the vendor's event types, authenticated now."""
    fuzz_source = FUZZ_SOURCES[source]
    vendor = VENDORS[source]
    vendor_type = data.draw(st.sampled_from(vendor.kit.simulated_types), label="vendor_type")
    now = time.time()
    call = vendor.kit.simulated_call(None, now=now)
    schemes = vendor.kit.auth_schemes(fuzz_source)
    scheme = data.draw(st.sampled_from(schemes), label="scheme") if len(schemes) > 1 else schemes[0]
    return vendor.kit.simulate_delivery(scheme, vendor_type, call, now=now)


#: each fuzzed source's config, as the ingress under test parses it from the same tables
FUZZ_SOURCES: dict[str, Any] = {
    name: VENDORS[name].config_model.model_validate(table) for name, table in SOURCES.items()
}


SHIFT_TIME = st.builds(
    lambda offset: Mutation("shift_time", (offset,)),
    st.integers(-3 * TOLERANCE_S, 3 * TOLERANCE_S)
    | st.sampled_from((-(10**9), 10**9, -(10**6), 10**6)),
)
#: body mutations weigh double: parsing is where leniency can break
_COMMON = [*BODY_MUTATIONS, *BODY_MUTATIONS, *HEADER_MUTATIONS, st.just(Mutation("none"))]
#: a vendor whose authentication covers a timestamp also gets deliveries authenticated at
#: other times, inside and outside the tolerance
MUTATIONS = {
    name: pick([*_COMMON, SHIFT_TIME, SHIFT_TIME] if vendor.kit.timestamped else _COMMON)
    for name, vendor in VENDORS.items()
}


def reauthenticated(source: str, delivery: Delivery, body: bytes, at: float) -> Headers:
    """The delivery's headers authenticating `body` at unix time `at` instead, in the
    delivery's own scheme (the kit's `reauthenticate`)."""
    kit = VENDORS[source].kit
    return list(kit.reauthenticate(FUZZ_SOURCES[source], delivery.headers, body, at).items())


def authenticates_body(source: str, delivery: Delivery) -> bool:
    """Whether the delivery's authentication covers its body: authenticating two bodies
    at one moment gives two sets of headers (a Basic or Bearer credential is the same
    whatever the body)."""
    now = time.time()
    return reauthenticated(source, delivery, b"{}", now) != reauthenticated(
        source, delivery, b"[]", now
    )


def build(source: str, delivery: Delivery, mutation: Mutation) -> tuple[bytes, Headers, int | None]:
    """The mutated request and the status the contract demands (None: any allowed one)."""
    headers: Headers = list(delivery.headers.items())
    body = delivery.body
    kind = mutation.kind
    if kind == "none":
        return body, headers, 200
    if kind == "shift_time":
        (offset,) = mutation.args
        headers = reauthenticated(source, delivery, body, time.time() + offset)
        if abs(offset) > TOLERANCE_S + 5:
            return body, headers, 401
        return body, headers, 200 if abs(offset) < TOLERANCE_S - 5 else None
    if kind in HEADER_KINDS:
        headers = mutate_headers(headers, mutation)
        if kind == "strip_auth":
            return body, headers, 401
        present = {name for name, _ in list(delivery.headers.items())}
        auth_present = VENDORS[source].kit.auth_headers & present
        if kind == "drop_header" and mutation.args[0] in auth_present:
            return body, headers, 401
        if kind == "chunked":
            return body, headers, 200
        return body, headers, None
    body = mutate_body(delivery.body, mutation)
    if len(body) > MAX_BODY_BYTES:
        return body, headers, 413
    if authenticates_body(source, delivery) and not mutation.resign:
        return body, headers, 401 if body != delivery.body else 200
    if mutation.resign:
        try:
            headers = reauthenticated(source, delivery, body, time.time())
        except UnicodeDecodeError:
            # a scheme that signs text (Standard Webhooks) cannot authenticate this body: no
            # vendor sends it, and with the original body's signature it is refused
            return body, headers, 401
    if not _json_object(body):
        return body, headers, 400
    return body, headers, None


HEADER_KINDS = frozenset(
    {
        "drop_header",
        "set_header",
        "dup_header",
        "edit_header",
        "content_type",
        "strip_auth",
        "chunked",
    }
)


def _json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


def check_answer(
    fuzz: FuzzIngress,
    source: str,
    body: bytes,
    headers: Headers,
    expected: int | None,
    *,
    chunked: bool,
    what: str,
) -> None:
    """Send one request and check every invariant on what came back and on Redis."""
    before = fuzz.queued()
    answer = fuzz.post(source, body, headers, chunked=chunked)
    context = f"{what}: HTTP {answer.status_code} {answer.text[:300]}"
    assert answer.status_code in ALLOWED_STATUSES, context
    if expected is not None:
        assert answer.status_code == expected, context
    shown = answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers)
    for secret in SECRET_TEXTS:
        assert secret not in shown, f"{what}: a secret is in the answer"
    status = answer.json()["status"]
    after = fuzz.queued()
    if answer.status_code == 200 and status == "accepted":
        fuzz.accepted.setdefault(source, set()).add(answer.json()["event_key"])
        assert after == (before[0] + 1, before[1] + 1), context
    else:
        assert after == before, f"{context}: the queue changed from {before} to {after}"


def check_logs(fuzz: FuzzIngress) -> None:
    for line in fuzz.logs.lines:
        for secret in SECRET_TEXTS:
            assert secret not in line, f"a secret is in a log line: {line[:300]}"
        assert '"level":"error"' not in line, line[:500]
    fuzz.logs.lines.clear()


def fuzz_vendor(fuzz: FuzzIngress, source: str) -> None:
    assert fuzz.config.sources[source] == FUZZ_SOURCES[source]

    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        for index in range(BATCH):
            delivery = realistic(source, data)
            mutation = data.draw(MUTATIONS[source], label=f"mutation {index}")
            body, headers, expected = build(source, delivery, mutation)
            what = f"{source} {mutation.kind}{mutation.args!r:.200} resign={mutation.resign}"
            check_answer(
                fuzz,
                source,
                body,
                headers,
                expected,
                chunked=mutation.kind == "chunked",
                what=what,
            )
            if mutation.kind == "none":
                # the vendor's retry of the same delivery: a duplicate (or ignored again)
                again = fuzz.post(source, body, headers)
                assert again.status_code == 200, again.text
                assert again.json()["status"] in ("duplicate", "ignored"), again.text
        check_logs(fuzz)

    run()


@pytest.mark.parametrize("source", sorted(VENDORS))
def test_fuzzed_deliveries(fuzz_ingress: FuzzIngress, source: str) -> None:
    started = time.monotonic()
    fuzz_vendor(fuzz_ingress, source)
    elapsed = time.monotonic() - started
    # every accepted event, and only those, left a dedupe mark and one queued message
    marks = fuzz_ingress.dedupe_marks()
    accepted = {f"{source}:{key}" for key in fuzz_ingress.accepted.get(source, set())}
    assert marks == accepted
    assert fuzz_ingress.queued() == (len(accepted), len(accepted))
    assert fuzz_ingress.requests_made >= MIN_REQUESTS_PER_VENDOR, fuzz_ingress.requests_made
    print(f"{source}: {fuzz_ingress.requests_made} requests in {elapsed:.1f}s")
