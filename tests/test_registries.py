"""Every registered vendor and sink comes with its docs and tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from callhook.sinks import SINKS
from callhook.vendors import VENDORS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_vendor_has_docs(name: str) -> None:
    assert VENDORS[name].name == name
    assert (ROOT / "docs" / "vendors" / f"{name}.md").is_file()


@pytest.mark.parametrize("name", sorted(set(SINKS) - {"file"}))
def test_sink_has_docs_and_tests(name: str) -> None:
    assert SINKS[name].type_name == name
    assert (ROOT / "docs" / "sinks" / f"{name}.md").is_file()
    assert (ROOT / "tests" / "sinks" / f"test_{name}.py").is_file()
