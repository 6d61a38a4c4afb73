"""Config refusals and redaction that protect an internet-facing deployment, through
`callhook check-config` as an operator meets them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from callhook.cli import main
from callhook.redaction import redact_url

QUO_KEY = base64.b64encode(b"a-legacy-key-of-32-bytes-exactly").decode()
QUO_WHSEC = "whsec_" + base64.b64encode(b"a-24-byte-standard-key!!").decode()


def check_config(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "callhook.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    return result.exit_code, result.output


def source(vendor: str, **fields: str) -> str:
    base = {
        "cometchat": {
            "app_id": "app1",
            "basic_auth_username": "hooks",
            "basic_auth_password": "a-password-of-24-bytes!!",
            "api_key": "k",
        },
        "openphone": {"signing_secret": QUO_KEY, "webhook_secret": QUO_WHSEC, "api_key": "k"},
        "diga": {"webhook_token": "a-token-of-more-than-16-bytes", "api_key": "k"},
    }[vendor]
    lines = [f"[sources.{vendor}]", f'vendor = "{vendor}"']
    lines += [f'{key} = "{value}"' for key, value in {**base, **fields}.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("vendor", "key", "weak"),
    [
        ("cometchat", "basic_auth_password", "AA"),
        ("cometchat", "basic_auth_password", "fifteen-bytes!!"),
        ("diga", "webhook_token", "short-token"),
        ("openphone", "signing_secret", "AA"),
        ("openphone", "signing_secret", base64.b64encode(b"15-bytes-of-key").decode()),
        ("openphone", "webhook_secret", "whsec_AA"),
        ("openphone", "webhook_secret", "whsec_" + base64.b64encode(b"fifteen-bytes!!").decode()),
    ],
)
def test_a_webhook_secret_under_16_bytes_is_refused_naming_the_key(
    tmp_path: Path, vendor: str, key: str, weak: str
) -> None:
    status, output = check_config(tmp_path, source(vendor, **{key: weak}))
    assert status == 2
    assert f"sources.{vendor}.{key}:" in output
    assert "16 bytes" in output
    assert weak not in output


@pytest.mark.parametrize(
    ("vendor", "key"),
    [("cometchat", "basic_auth_password"), ("diga", "webhook_token")],
)
def test_an_empty_secret_still_switches_the_webhook_off(
    tmp_path: Path, vendor: str, key: str
) -> None:
    status, output = check_config(tmp_path, source(vendor, **{key: ""}))
    assert status == 0, output


def test_16_bytes_of_key_are_enough(tmp_path: Path) -> None:
    sixteen = base64.b64encode(b"0123456789abcdef").decode()
    text = source("openphone", signing_secret=sixteen, webhook_secret="whsec_" + sixteen)
    text += source("diga", webhook_token="0123456789abcdef")
    status, output = check_config(tmp_path, text)
    assert status == 0, output


def test_a_timestamp_tolerance_reaching_the_dedupe_ttl_is_refused(tmp_path: Path) -> None:
    text = "[redis]\ndedupe_ttl_s = 259200\n[ingress]\ntimestamp_tolerance_s = 259200\n"
    status, output = check_config(tmp_path, text)
    assert status == 2
    assert output.startswith("callhook: config error: ingress.timestamp_tolerance_s: ")
    assert "redis.dedupe_ttl_s (259200)" in output
    just_below = "[redis]\ndedupe_ttl_s = 259201\n[ingress]\ntimestamp_tolerance_s = 259200\n"
    status, output = check_config(tmp_path, just_below)
    assert status == 0, output


def test_check_config_hides_userinfo_and_query_values_of_every_url(tmp_path: Path) -> None:
    text = (
        "[redis]\n"
        'url = "redis://default:userinfo-secret@redis.internal:6380/2?password=query-secret"\n'
        + source("diga", api_base_url="https://api-token@diga.example/v1?key=api-query-secret")
        + "[[sinks]]\n"
        'name = "crm"\ntype = "http"\n'
        'url = "https://hooks.example.com/in/capability-path?token=capability-secret"\n'
        f'secret = "{QUO_WHSEC}"\n'
        "[[sinks]]\n"
        'name = "db"\ntype = "database"\n'
        'url = "postgresql://callhook:db-secret@db.internal:5432/calls?sslpassword=ssl-secret"\n'
    )
    status, output = check_config(tmp_path, text)
    assert status == 0, output
    for secret in (
        "userinfo-secret",
        "query-secret",
        "api-token",
        "api-query-secret",
        "capability-secret",
        "db-secret",
        "ssl-secret",
    ):
        assert secret not in output
    resolved = json.loads(output.partition("\n")[2])
    assert resolved["redis"]["url"] == (
        "redis://default:**********@redis.internal:6380/2?password=**********"
    )
    assert resolved["sinks"][0]["url"] == (
        "https://hooks.example.com/in/capability-path?token=**********"
    )
    assert resolved["sources"]["diga"]["api_base_url"] == (
        "https://**********@diga.example/v1?key=**********"
    )


def test_a_url_without_secrets_is_shown_as_written() -> None:
    assert redact_url("sqlite:////var/lib/callhook/calls.db") == (
        "sqlite:////var/lib/callhook/calls.db"
    )
    assert redact_url("https://api.diga.io") == "https://api.diga.io"


def test_each_vendor_defaults_to_its_documented_rate_limit(tmp_path: Path) -> None:
    text = source("cometchat") + source("openphone") + source("diga")
    status, output = check_config(tmp_path, text)
    assert status == 0, output
    sources = json.loads(output.partition("\n")[2])["sources"]
    assert sources["cometchat"]["rate_limit_per_s"] == 100.0
    assert sources["openphone"]["rate_limit_per_s"] == 10.0
    assert sources["diga"]["rate_limit_per_s"] == 5.0
