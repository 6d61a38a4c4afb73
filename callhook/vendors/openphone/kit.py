"""OpenPhone / Quo imitated: example source, calls, deliveries signed in either webhook
generation, and the REST API."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callhook.vendors.kit import VendorKit
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.signatures import WEBHOOK_ID
from callhook.vendors.openphone.simulate import (
    SIMULATED_TYPES,
    signed_headers,
    simulate_delivery,
    simulated_call,
    simulator_app,
)


def new_secrets() -> dict[str, str]:
    return {
        "signing_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        "webhook_secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "api_key": secrets.token_urlsafe(24),
    }


def example_source(values: Mapping[str, str], api_base_url: str) -> dict[str, Any]:
    return {"vendor": "openphone", **values, "api_base_url": api_base_url}


def generations(config: OpenPhoneSource) -> tuple[OpenPhoneSource, ...]:
    """The source as each webhook generation it has a secret for signs (legacy, then the
    Standard Webhooks one): Quo delivers in both side by side."""
    narrowed = (
        config.model_copy(update={"webhook_secret": None}) if config.signing_secret else None,
        config.model_copy(update={"signing_secret": None}) if config.webhook_secret else None,
    )
    return tuple(scheme for scheme in narrowed if scheme is not None)


def reauthenticate(
    config: OpenPhoneSource, headers: Mapping[str, str], body: bytes, now: float
) -> dict[str, str]:
    """The headers signed again over `body` at `now`, in the delivery's generation."""
    msg_id = headers.get(WEBHOOK_ID)
    if msg_id is None:
        return {**headers, **signed_headers(config, body, now, generation="legacy")}
    return {**headers, **signed_headers(config, body, now, generation="2026-03-30", msg_id=msg_id)}


FIXTURES = Path(__file__).parent / "fixtures"

KIT: VendorKit[OpenPhoneSource] = VendorKit(
    simulated_types=SIMULATED_TYPES,
    call_sequence=(
        "call.ringing",
        "call.completed",
        "call.recording.completed",
        "call.summary.completed",
    ),
    completed_type="call.completed",
    auth_headers=frozenset(
        {"openphone-signature", "webhook-id", "webhook-timestamp", "webhook-signature"}
    ),
    timestamped=True,
    auth_schemes=generations,
    new_secrets=new_secrets,
    example_source=example_source,
    simulated_call=simulated_call,
    simulate_delivery=simulate_delivery,
    reauthenticate=reauthenticate,
    simulator_app=simulator_app,
    fixtures=FIXTURES,
)
