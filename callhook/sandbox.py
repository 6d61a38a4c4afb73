"""Sandbox mode: `callhook up` with no config file at all.

Three sources (cometchat, openphone, diga) with secrets generated once and kept under
`var/`, their vendor APIs answered by the in-process simulators (the same ones the tests
use), the SQLite database sink at `var/callhook.db`, and the console on with a generated
token. Everything is written to
`var/sandbox.toml`, an ordinary config file, which the other commands then find by
themselves (`callhook send-test-event openphone` needs no flags).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.routing import Mount

from callhook.sinks import SINKS
from callhook.vendors import VENDORS
from callhook.vendors.base import VendorSimulatorState

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
            mounts.append(Mount(f"/{name}", app=vendor.simulator_app(state)))
        return Starlette(routes=mounts)


def _generated_secrets(path: Path) -> dict[str, str]:
    stored: dict[str, str] = orjson.loads(path.read_bytes()) if path.is_file() else {}
    if "console_token" in stored:
        return stored
    values = stored or {
        "cometchat_user": "callhook",
        "cometchat_password": secrets.token_urlsafe(18),
        "cometchat_api_key": secrets.token_hex(20),
        "openphone_signing_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        "openphone_webhook_secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "openphone_api_key": secrets.token_urlsafe(24),
        "diga_webhook_token": secrets.token_urlsafe(24),
        "diga_api_key": secrets.token_urlsafe(24),
    }
    # added when a sandbox made before the console had none
    values["console_token"] = secrets.token_urlsafe(24)
    path.write_bytes(orjson.dumps(values, option=orjson.OPT_INDENT_2))
    path.chmod(0o600)
    return values


_SOURCE_TABLES = {
    "cometchat": """[sources.cometchat]
vendor = "cometchat"
app_id = "sandbox"
region = "us"
basic_auth_username = "{cometchat_user}"
basic_auth_password = "{cometchat_password}"
api_key = "{cometchat_api_key}"
api_base_url = "{api}/cometchat"
""",
    "openphone": """[sources.openphone]
vendor = "openphone"
signing_secret = "{openphone_signing_secret}"
webhook_secret = "{openphone_webhook_secret}"
api_key = "{openphone_api_key}"
api_base_url = "{api}/openphone"
""",
    "diga": """[sources.diga]
vendor = "diga"
webhook_token = "{diga_webhook_token}"
api_key = "{diga_api_key}"
api_base_url = "{api}/diga"
""",
}


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
        table.format(api=api, **values) for name, table in _SOURCE_TABLES.items() if name in VENDORS
    )
    text = text.replace("{sources}", sources).replace("{console_token}", values["console_token"])
    path = var_dir / SANDBOX_FILE
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return Sandbox(
        config_path=path,
        console_token=values["console_token"],
        api_keys={name: values[f"{name}_api_key"] for name in _SOURCE_TABLES if name in VENDORS},
    )
