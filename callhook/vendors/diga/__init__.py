"""Diga (AI voice agents): Bearer-authenticated "Call Finished" workflow posts, Get Call /
messages / List Calls enrichment."""

from __future__ import annotations

from callhook.vendors.base import Vendor
from callhook.vendors.diga import mapping, webhook
from callhook.vendors.diga.client import DigaClient
from callhook.vendors.diga.config import DigaSource
from callhook.vendors.diga.kit import KIT

__all__ = ["VENDOR", "DigaClient", "DigaSource"]

VENDOR: Vendor[DigaSource] = Vendor(
    name="diga",
    config_model=DigaSource,
    authenticate=webhook.authenticate,
    parse=webhook.parse,
    record_from_event=mapping.record_from_event,
    record_from_api=mapping.record_from_api,
    client=DigaClient,
    kit=KIT,
)
