"""The vendor registry. A source picks one by `vendor = "..."`.

Adding a vendor is one folder, `callhook/vendors/<name>/`, whose `__init__.py` declares
`VENDOR` (see docs/adding-a-vendor.md), plus one line in `VENDOR_FOLDERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from callhook.registry import registry
from callhook.vendors.base import Vendor

#: one line per vendor: its folder under callhook/vendors/, named as its `vendor = "..."`
VENDOR_FOLDERS: tuple[str, ...] = (
    "cometchat",
    "openphone",
    "diga",
)


def _declared(folder: str) -> Vendor[Any]:
    vendor: Vendor[Any] = import_module(f"{__name__}.{folder}").VENDOR
    if vendor.name != folder:
        raise RuntimeError(f"callhook/vendors/{folder}/ declares the vendor {vendor.name!r}")
    return vendor


VENDORS: Mapping[str, Vendor[Any]] = registry(
    (_declared(folder) for folder in VENDOR_FOLDERS), key=lambda vendor: vendor.name
)
