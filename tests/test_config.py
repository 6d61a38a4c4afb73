"""Config: TOML, ${ENV} expansion, one clear line per problem, secrets redacted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from callhook.cli import main
from callhook.config import Config, load_config, redacted
from callhook.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

EXAMPLE_ENV = {
    "QUO_LEGACY_SECRET": "c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA=",
    "QUO_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "QUO_API_KEY": "quo-api-key-secret",
    "CC_APP_ID": "app123",
    "CC_HOOK_USER": "hookuser",
    "CC_HOOK_PASS": "hook-pass-secret",
    "CC_API_KEY": "cc-api-key-secret",
    "DIGA_HOOK_TOKEN": "diga-token-secret",
    "DIGA_API_KEY": "diga-api-key-secret",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-url-secret",
    "CRM_WHSEC": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "CALLHOOK_CONSOLE_TOKEN": "console-token-secret-0123456789",
}
SECRETS = [v for k, v in EXAMPLE_ENV.items() if k not in ("CC_APP_ID", "CC_HOOK_USER")]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callhook.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_every_source_and_sink() -> None:
    config = load_config(ROOT / "callhook.example.toml", EXAMPLE_ENV)
    assert set(config.sources) == {"quo", "cometchat", "diga"}
    assert [s.type for s in config.sinks] == ["database", "s3", "slack", "http"]
    assert all(source.webhook_enabled() for source in config.sources.values())
    assert config.console.enabled


def test_redacted_dump_has_no_secret() -> None:
    config = load_config(ROOT / "callhook.example.toml", EXAMPLE_ENV)
    dumped = json.dumps(redacted(config))
    for secret in SECRETS:
        assert secret not in dumped
    assert "**********" in dumped


def test_no_file_is_built_in_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {})
    assert config == Config()
    assert config.sources == {}
    assert config.redis.url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sources.a]\nvendor = "nope"\n', "sources.a.vendor: unknown vendor 'nope'"),
        ("[sources.a]\napi_key = 'x'\n", "sources.a.vendor: missing"),
        ('[sources.a]\nvendor = "diga"\napi_key = "k"\n', "sources.a.webhook_token: missing"),
        (
            '[sources.a]\nvendor = "diga"\nwebhook_token = "${NOT_SET_ANYWHERE}"\n',
            "sources.a.webhook_token: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            '[ingress]\nmax_body_bytes = "big"\n',
            "ingress.max_body_bytes: Input should be a valid integer",
        ),
        ("[ingress]\nmax_bodybytes = 1\n", "ingress.max_bodybytes: unknown key"),
        ('[redis]\nurl = "http://x"\n', "redis.url: Value error, must be a redis://"),
        ('[[sinks]]\nname = "x"\ntype = "kafka"\n', "sinks[0] (x).type: unknown sink type 'kafka'"),
        ("[ingress\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_check_config_prints_redacted_and_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    good = runner.invoke(main, ["check-config", "--config", str(ROOT / "callhook.example.toml")])
    assert good.exit_code == 0, good.output
    for secret in SECRETS:
        assert secret not in good.output
    bad = runner.invoke(main, ["check-config", "--config", str(write(tmp_path, "[sources.a]\n"))])
    assert bad.exit_code == 2
    assert re.fullmatch(r"callhook: config error: sources\.a\.vendor: missing.*\n", bad.output)
