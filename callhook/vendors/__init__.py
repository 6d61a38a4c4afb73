"""The vendor registry: one line per calling platform. A source picks one by `vendor = "..."`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callhook.registry import registry
from callhook.vendors.base import Vendor
from callhook.vendors.cometchat import CometChat
from callhook.vendors.diga import Diga
from callhook.vendors.openphone import OpenPhone

VENDORS: Mapping[str, Vendor[Any]] = registry(
    (
        CometChat(),
        OpenPhone(),
        Diga(),
    ),
    key=lambda vendor: vendor.name,
)
