"""CometChat imitated: example source, calls, Basic-authenticated deliveries, Calls API."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callhook.vendors.cometchat.config import CometChatSource
from callhook.vendors.cometchat.simulate import (
    SIMULATED_TYPES,
    simulate_delivery,
    simulated_call,
    simulator_app,
)
from callhook.vendors.kit import VendorKit, headers_as_they_are, one_scheme


def new_secrets() -> dict[str, str]:
    return {
        "basic_auth_username": "callhook",
        "basic_auth_password": secrets.token_urlsafe(18),
        "api_key": secrets.token_hex(20),
    }


def example_source(values: Mapping[str, str], api_base_url: str) -> dict[str, Any]:
    return {
        "vendor": "cometchat",
        "app_id": "sandbox",
        "region": "us",
        **values,
        "api_base_url": api_base_url,
    }


FIXTURES = Path(__file__).parent / "fixtures"

KIT: VendorKit[CometChatSource] = VendorKit(
    simulated_types=SIMULATED_TYPES,
    call_sequence=("call_initiated", "call_started", "call_ended", "recording_generated"),
    completed_type="call_ended",
    auth_headers=frozenset({"authorization"}),
    timestamped=False,
    auth_schemes=one_scheme,
    new_secrets=new_secrets,
    example_source=example_source,
    simulated_call=simulated_call,
    simulate_delivery=simulate_delivery,
    reauthenticate=headers_as_they_are,
    simulator_app=simulator_app,
    fixtures=FIXTURES,
)
