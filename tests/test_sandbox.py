"""Sandbox mode's config: one source per registered vendor, secrets made once and kept."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import orjson

from callhook.config import load_config
from callhook.sandbox import SECRETS_FILE, prepare
from callhook.vendors import VENDORS


def sandbox_toml(var: Path) -> dict[str, object]:
    sandbox = prepare(var, ingress_host="127.0.0.1", ingress_port=8000, simulator_port=8001)
    return tomllib.loads(sandbox.config_path.read_text())


def test_every_vendor_gets_a_working_source_and_the_secrets_stay(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = sandbox_toml(var)
    sources = first["sources"]
    assert isinstance(sources, dict)
    assert sorted(sources) == sorted(VENDORS)
    for name, table in sources.items():
        assert table["vendor"] == name
        assert table["api_base_url"] == f"http://127.0.0.1:8001/{name}"
    config = load_config(str(var / "sandbox.toml"), sandbox=False)
    assert all(config.sources[name].webhook_enabled() for name in VENDORS)
    # a restart keeps every secret (and the console token): running senders still work
    assert sandbox_toml(var) == first
    assert stat.S_IMODE((var / SECRETS_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "sandbox.toml").stat().st_mode) == 0o600


def test_a_sandbox_from_an_older_release_keeps_its_console_token(tmp_path: Path) -> None:
    """The secrets file used to be flat (`cometchat_password`, ...): the console token a
    user bookmarked survives, and each vendor gets secrets of the current shape."""
    var = tmp_path / "var"
    var.mkdir()
    old = {"console_token": "bookmarked-token-0123456789", "diga_webhook_token": "x" * 24}
    (var / SECRETS_FILE).write_bytes(orjson.dumps(old))
    written = sandbox_toml(var)
    console = written["console"]
    assert isinstance(console, dict)
    assert console["token"] == "bookmarked-token-0123456789"
    load_config(str(var / "sandbox.toml"), sandbox=False)
