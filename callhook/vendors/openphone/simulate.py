"""A simulated OpenPhone / Quo: realistic calls, webhook deliveries signed exactly as Quo
signs them (either generation), and a REST API server.

Used by `callhook send-test-event`, by sandbox mode (`callhook up` with no config) and by
the tests, which sign their fixtures with the helpers here rather than pasting signatures.
"""

from __future__ import annotations

import base64

import orjson

from callhook.events import Delivery
from callhook.vendors.kit import SimulatedCall
from callhook.vendors.openphone.calls import Scenario, legacy_shape, new_call_id, simulated_call
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.payloads import (
    SIMULATED_TYPES,
    Generation,
    webhook_id,
    webhook_payload,
)
from callhook.vendors.openphone.signatures import (
    LEGACY_HEADER,
    legacy_signature,
    standard_headers,
)
from callhook.vendors.openphone.simulated_api import error_body, simulator_app

__all__ = [
    "SIMULATED_TYPES",
    "Generation",
    "Scenario",
    "error_body",
    "generation_for",
    "legacy_shape",
    "legacy_signed_headers",
    "new_call_id",
    "signed_headers",
    "simulate_delivery",
    "simulated_call",
    "simulator_app",
    "standard_signed_headers",
]

_JSON = {"content-type": "application/json"}


def legacy_signed_headers(signing_secret: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of a legacy delivery of `body` at `now`: `openphone-signature` with a
    millisecond timestamp, keyed with the base64 signing secret."""
    key = base64.b64decode(signing_secret + "=" * (-len(signing_secret) % 4))
    return {LEGACY_HEADER: legacy_signature(key, int(now * 1000), body), **_JSON}


def standard_signed_headers(
    webhook_secret: str, msg_id: str, body: bytes, now: float
) -> dict[str, str]:
    """The headers of a new-generation delivery: `webhook-id`, `webhook-timestamp` (unix
    seconds) and `webhook-signature`, keyed with the `whsec_` secret."""
    return {**standard_headers(webhook_secret, msg_id, int(now), body), **_JSON}


def generation_for(config: OpenPhoneSource) -> Generation:
    """The generation a source receives by default: the new one when it has a
    `webhook_secret`, else legacy."""
    if config.standard_secret() is not None:
        return "2026-03-30"
    if config.legacy_key() is not None:
        return "legacy"
    raise ValueError("the source has no webhook secret to sign with")


def signed_headers(
    config: OpenPhoneSource,
    body: bytes,
    now: float,
    *,
    generation: Generation | None = None,
    msg_id: str = "msg_callhook_simulated",
) -> dict[str, str]:
    """The headers Quo sends with `body` to `config`'s source, in `generation` (default:
    `generation_for(config)`); `msg_id` is the Standard Webhooks delivery id."""
    chosen = generation or generation_for(config)
    if chosen == "legacy":
        secret = config.signing_secret.get_secret_value() if config.signing_secret else ""
        return legacy_signed_headers(secret, body, now)
    secret = config.standard_secret() or ""
    return standard_signed_headers(secret, msg_id, body, now)


def simulate_delivery(
    config: OpenPhoneSource,
    vendor_type: str,
    call: SimulatedCall,
    now: float,
    *,
    generation: Generation | None = None,
) -> Delivery:
    """A delivery of `vendor_type` about `call`, as Quo posts it to `config`'s source.

    The envelope id and the `webhook-id` are stable per (call, type): building the same
    delivery again is what a vendor retry looks like.
    """
    chosen = generation or generation_for(config)
    payload = webhook_payload(vendor_type, call, now, generation=chosen)
    body = orjson.dumps(payload)
    headers = signed_headers(
        config, body, now, generation=chosen, msg_id=webhook_id(call.call_id, vendor_type)
    )
    return Delivery(body=body, headers=headers)
