"""Sandbox mode: `callhook up` with no config file at all.

One source per registered vendor (named after it), with the secrets its kit generates,
made once and kept under `var/`, their vendor APIs answered by the kits' in-process
simulators (the same ones the tests use), the SQLite database sink at `var/callhook.db`,
and the console on with a generated token. Everything is written to `var/sandbox.toml`, an
ordinary config file, which the other commands then find by themselves
(`callhook send-test-event openphone` needs no flags).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import Mount

from callhook.sinks import SINKS
from callhook.vendors import VENDORS
from callhook.vendors.kit import VendorSimulatorState

SANDBOX_FILE = "sandbox.toml"
SECRETS_FILE = "sandbox-secrets.json"


@dataclass
class Sandbox:
    config_path: Path
    console_token: str
    api_keys: dict[str, str]
    simulator_states: dict[str, VendorSimulatorState] = field(default_factory=dict)

    def simulator_app(self) -> Starlette:
        """Every vendor's simulated API, each mounted at /<vendor>."""
        mounts = []
        for name, vendor in VENDORS.items():
            if name not in self.api_keys:
                continue
            state = VendorSimulatorState(api_key=self.api_keys[name], autocreate=True)
            self.simulator_states[name] = state
            mounts.append(Mount(f"/{name}", app=vendor.kit.simulator_app(state)))
        return Starlette(routes=mounts)


def _generated_secrets(path: Path) -> dict[str, Any]:
    """The sandbox's secrets, made once and kept: the console token and each vendor's
    example secrets (a vendor registered later gets its own on the next start)."""
    stored: dict[str, Any] = orjson.loads(path.read_bytes()) if path.is_file() else {}
    sources = stored.get("sources")
    sources = sources if isinstance(sources, dict) else {}
    values: dict[str, Any] = {
        # a sandbox made before the console keeps working: it gets a token now
        "console_token": stored.get("console_token") or secrets.token_urlsafe(24),
        "sources": {
            name: sources.get(name) or vendor.kit.new_secrets() for name, vendor in VENDORS.items()
        },
    }
    if values != stored:
        path.write_bytes(orjson.dumps(values, option=orjson.OPT_INDENT_2))
        path.chmod(0o600)
    return values


def _toml_table(header: str, table: Mapping[str, Any]) -> str:
    """`[header]` and its keys; values are strings, numbers or booleans."""
    lines = [f"[{header}]"]
    for key, value in table.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value!r}")
        else:
            lines.append(f"{key} = {orjson.dumps(str(value)).decode()}")
    return "\n".join(lines) + "\n"


def prepare(
    var_dir: Path,
    *,
    ingress_host: str,
    ingress_port: int,
    simulator_port: int,
    redis_url: str = "redis://127.0.0.1:6379/0",
    namespace: str = "callhook-sandbox",
) -> Sandbox:
    """Write `var/sandbox.toml` (secrets generated on first use) and return the sandbox."""
    var_dir.mkdir(parents=True, exist_ok=True)
    values = _generated_secrets(var_dir / SECRETS_FILE)
    api = f"http://127.0.0.1:{simulator_port}"
    if "database" in SINKS:
        sink = f'type = "database"\nurl = "sqlite:///{(var_dir / "callhook.db").as_posix()}"'
    else:
        sink = f'type = "file"\npath = "{(var_dir / "records.jsonl").as_posix()}"'
    text = f"""# Written by `callhook up` in sandbox mode (no config file was found).
# Vendor APIs are simulated in-process at {api}. Delete this file to regenerate it.

[redis]
url = "{redis_url}"
namespace = "{namespace}"

[ingress]
host = "{ingress_host}"
port = {ingress_port}

# The console (/console) and the JSON API (/api/v1), on the ingress's port.
[console]
token = "{{console_token}}"

# The simulators serve on loopback: let recording copies (an s3 sink's copy_recordings)
# reach them. Never set this where recording hosts are not all yours.
[recordings]
allow_private_networks = true

{{sources}}
[[sinks]]
name = "sandbox"
{sink}
"""
    sources = "\n".join(
        _toml_table(
            f"sources.{name}", vendor.kit.example_source(values["sources"][name], f"{api}/{name}")
        )
        for name, vendor in VENDORS.items()
    )
    text = text.replace("{sources}", sources).replace("{console_token}", values["console_token"])
    path = var_dir / SANDBOX_FILE
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return Sandbox(
        config_path=path,
        console_token=values["console_token"],
        api_keys={name: values["sources"][name]["api_key"] for name in VENDORS},
    )
