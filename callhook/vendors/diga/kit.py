"""Diga imitated: example source, calls, Bearer-authenticated "Call Finished" posts, API."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callhook.vendors.diga.config import DigaSource
from callhook.vendors.diga.simulate import (
    SIMULATED_TYPES,
    simulate_delivery,
    simulated_call,
    simulator_app,
)
from callhook.vendors.kit import VendorKit, headers_as_they_are, one_scheme


def new_secrets() -> dict[str, str]:
    return {"webhook_token": secrets.token_urlsafe(24), "api_key": secrets.token_urlsafe(24)}


def example_source(values: Mapping[str, str], api_base_url: str) -> dict[str, Any]:
    return {"vendor": "diga", **values, "api_base_url": api_base_url}


FIXTURES = Path(__file__).parent / "fixtures"

KIT: VendorKit[DigaSource] = VendorKit(
    simulated_types=SIMULATED_TYPES,
    call_sequence=("call_finished",),
    completed_type="call_finished",
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
