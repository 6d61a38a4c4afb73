"""OpenPhone / Quo: signed webhooks in two generations, Get Call (+ extras) and List Calls."""

from __future__ import annotations

from callhook.vendors.base import Vendor
from callhook.vendors.openphone import mapping, webhook
from callhook.vendors.openphone.client import OpenPhoneClient
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.kit import KIT

__all__ = ["VENDOR", "OpenPhoneClient", "OpenPhoneSource"]

VENDOR: Vendor[OpenPhoneSource] = Vendor(
    name="openphone",
    config_model=OpenPhoneSource,
    authenticate=webhook.authenticate,
    parse=webhook.parse,
    record_from_event=mapping.record_from_event,
    record_from_api=mapping.record_from_api,
    client=OpenPhoneClient,
    kit=KIT,
)
