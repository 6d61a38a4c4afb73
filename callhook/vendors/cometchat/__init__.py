"""CometChat (Calls): Basic-authenticated webhooks, Get Call / List Calls enrichment."""

from __future__ import annotations

from callhook.vendors.base import Vendor
from callhook.vendors.cometchat import mapping, webhook
from callhook.vendors.cometchat.client import CometChatClient
from callhook.vendors.cometchat.config import CometChatSource
from callhook.vendors.cometchat.kit import KIT

__all__ = ["VENDOR", "CometChatClient", "CometChatSource"]

VENDOR: Vendor[CometChatSource] = Vendor(
    name="cometchat",
    config_model=CometChatSource,
    authenticate=webhook.authenticate,
    parse=webhook.parse,
    record_from_event=mapping.record_from_event,
    record_from_api=mapping.record_from_api,
    client=CometChatClient,
    kit=KIT,
)
