"""slack sink against a loopback Slack: message content, templates, exactly one message per
(call, event type), and how each of Slack's answers is classified."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio
from pydantic import ValidationError

from callhook.errors import PermanentError, RateLimited, RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.record import CallRecord, CallStatus, Recording
from callhook.sinks.base import SinkResources, Trigger
from callhook.sinks.slack import SlackSink, SlackSinkConfig
from tests.servers import ServerThread, free_port
from tests.sinks._slack_support import BOT_TOKEN, CHANNEL, WEBHOOK_PATH, FakeSlack

STARTED = "2024-05-01T14:03:00.000Z"
STARTED_FIELD = f"*Started*\n<!date^1714572180^{{date_short_pretty}} {{time}}|{STARTED}>"
CONTEXT = {
    "type": "context",
    "elements": [{"type": "mrkdwn", "text": "openphone · source `quo` · call `AC123`"}],
}

COMPLETED = CallRecord(
    source="quo",
    vendor="openphone",
    call_id="AC123",
    status=CallStatus.COMPLETED,
    vendor_status="completed",
    direction="inbound",
    media="audio",
    initiator="+15555550100",
    receiver="+15555550101",
    created_at="2024-05-01T14:02:55.000Z",
    started_at=STARTED,
    answered_at="2024-05-01T14:03:04.000Z",
    ended_at="2024-05-01T14:07:12.000Z",
    duration_s=252.0,
    revision=2,
).to_json_dict()

MISSED = {**COMPLETED, "status": "no_answer", "duration_s": None, "answered_at": None}

WITH_RECORDING = {
    **COMPLETED,
    "recordings": [
        Recording(
            id="RE1", url="https://files.example.com/RE1.mp3?sig=abc&exp=1", duration_s=240.4
        ).model_dump(mode="json")
    ],
    "summary": {"summary": ["Asked about pricing", "Wants a call back Friday"]},
}


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def trigger(event_type: EventType, key: str = "evt-1") -> Trigger:
    return Trigger(event_key=key, event_type=event_type, received_at="2024-05-01T14:07:13.000Z")


@pytest.fixture(scope="module")
def slack_server() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with ServerThread(fake.app) as server:
        fake.base_url = server.url
        yield fake


@pytest.fixture
def slack(slack_server: FakeSlack) -> FakeSlack:
    slack_server.reset()
    return slack_server


@pytest.fixture
async def resources(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> AsyncIterator[SinkResources]:
    async with make_client() as http:
        yield SinkResources(http, redis_async, redis_namespace)


def webhook_sink(slack: FakeSlack, resources: SinkResources, **options: Any) -> SlackSink:
    config = SlackSinkConfig.model_validate(
        {"name": "calls", "type": "slack", "webhook_url": slack.base_url + WEBHOOK_PATH, **options}
    )
    return SlackSink(config, resources)


def bot_sink(slack: FakeSlack, resources: SinkResources, **options: Any) -> SlackSink:
    settings = {"bot_token": BOT_TOKEN, "channel": CHANNEL, **options}
    config = SlackSinkConfig.model_validate(
        {"name": "calls", "type": "slack", "api_base_url": slack.base_url + "/api", **settings}
    )
    return SlackSink(config, resources)


def assert_no_secret(exc: BaseException) -> None:
    assert WEBHOOK_PATH not in str(exc)
    assert BOT_TOKEN not in str(exc)


# --- what the message says -------------------------------------------------------------


async def test_completed_call_message(slack: FakeSlack, resources: SinkResources) -> None:
    await webhook_sink(slack, resources).write(COMPLETED, trigger(EventType.COMPLETED))

    assert slack.messages == [
        {
            "text": "Call completed: +15555550100 → +15555550101 · inbound · completed · 4m 12s",
            "blocks": [
                section(":white_check_mark: *Call completed* · *+15555550100* → *+15555550101*"),
                {
                    "type": "section",
                    "fields": [
                        mrkdwn("*Status*\nCompleted"),
                        mrkdwn("*Direction*\nInbound"),
                        mrkdwn("*Duration*\n4m 12s"),
                        mrkdwn(STARTED_FIELD),
                    ],
                },
                CONTEXT,
            ],
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
        }
    ]


async def test_missed_call_message(slack: FakeSlack, resources: SinkResources) -> None:
    await webhook_sink(slack, resources).write(MISSED, trigger(EventType.MISSED))

    assert slack.messages == [
        {
            "text": "Missed call: +15555550100 → +15555550101 · inbound · no answer",
            "blocks": [
                section(":x: *Missed call* · *+15555550100* → *+15555550101*"),
                {
                    "type": "section",
                    "fields": [
                        mrkdwn("*Status*\nNo answer"),
                        mrkdwn("*Direction*\nInbound"),
                        mrkdwn(STARTED_FIELD),
                    ],
                },
                CONTEXT,
            ],
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
        }
    ]


async def test_recording_message_links_recording_and_summary(
    slack: FakeSlack, resources: SinkResources
) -> None:
    await webhook_sink(slack, resources).write(WITH_RECORDING, trigger(EventType.RECORDING_READY))

    [message] = slack.messages
    assert message["text"] == (
        "Recording ready: +15555550100 → +15555550101 · inbound · completed · 4m 12s"
    )
    assert message["blocks"] == [
        section(":studio_microphone: *Recording ready* · *+15555550100* → *+15555550101*"),
        {
            "type": "section",
            "fields": [
                mrkdwn("*Status*\nCompleted"),
                mrkdwn("*Direction*\nInbound"),
                mrkdwn("*Duration*\n4m 12s"),
                mrkdwn(STARTED_FIELD),
            ],
        },
        section(
            ":studio_microphone: "
            "<https://files.example.com/RE1.mp3?sig=abc&amp;exp=1|Recording> (4m 0s)"
        ),
        section("*Summary*\n• Asked about pricing\n• Wants a call back Friday"),
        CONTEXT,
    ]


async def test_bot_token_posts_the_same_message_to_the_channel(
    slack: FakeSlack, resources: SinkResources
) -> None:
    await bot_sink(slack, resources).write(COMPLETED, trigger(EventType.COMPLETED))
    await webhook_sink(slack, resources, name="other").write(
        COMPLETED, trigger(EventType.COMPLETED)
    )

    via_api, via_webhook = slack.messages
    assert via_api == {**via_webhook, "channel": CHANNEL}


# --- templates -------------------------------------------------------------------------

TEMPLATE = (
    "{{ initiator }} called {{ receiver }}: {{ status }}, {{ duration_s | duration }} "
    "(<https://crm.example.com/calls/{{ call_id }}|open in CRM>, {{ event.type }})"
)


async def test_template_renders_the_text(slack: FakeSlack, resources: SinkResources) -> None:
    record = {**COMPLETED, "initiator": "Ann <ann@example.com>"}

    await webhook_sink(slack, resources, template=TEMPLATE).write(
        record, trigger(EventType.COMPLETED)
    )

    rendered = (
        "Ann &lt;ann@example.com&gt; called +15555550101: completed, 4m 12s "
        "(<https://crm.example.com/calls/AC123|open in CRM>, call.completed)"
    )
    [message] = slack.messages
    assert message["text"] == rendered
    assert message["blocks"][0] == section(rendered)
    assert message["blocks"][-1] == CONTEXT


async def test_template_rendering_nothing_keeps_the_default_text(
    slack: FakeSlack, resources: SinkResources
) -> None:
    template = "{% if status == 'missed' %}Missed!{% endif %}"

    await webhook_sink(slack, resources, template=template).write(
        COMPLETED, trigger(EventType.COMPLETED)
    )

    assert slack.messages[0]["text"].startswith("Call completed: ")


async def test_template_that_fails_to_render_is_permanent(
    slack: FakeSlack, resources: SinkResources
) -> None:
    sink = webhook_sink(slack, resources, template="{{ nothing.at.all }}")

    with pytest.raises(PermanentError, match="template failed to render"):
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert slack.requests == 0


def test_template_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=r"not a valid Jinja2 template \(line 1"):
        SlackSinkConfig.model_validate(
            {"name": "s", "webhook_url": "https://hooks.slack.com/x", "template": "{{ oops"}
        )


@pytest.mark.parametrize(
    "escape_attempt",
    [
        "{{ initiator.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__.__mro__}'.format(initiator) }}",
    ],
)
async def test_template_is_sandboxed(
    slack: FakeSlack, resources: SinkResources, escape_attempt: str
) -> None:
    sink = webhook_sink(slack, resources, template=escape_attempt)

    with pytest.raises(PermanentError, match="SecurityError"):
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert slack.requests == 0


# --- what data cannot do ---------------------------------------------------------------

#: every Slack control sequence a payload might carry: broadcasts, user, channel and
#: user-group mentions, and a `|` that would give a link a label of the payload's choosing
HOSTILE = {
    **WITH_RECORDING,
    "initiator": "<!channel> <@U024BE7LH>",
    "receiver": "<!subteam^S0123|@sales> & <#C0SECRET>",
    "participants": [
        {"id": "p1", "name": "<!channel>"},
        {"id": "p2", "name": "<!here> <!everyone>"},
    ],
    "recordings": [
        {
            "id": "RE1",
            "url": "https://files.example.com/RE1.mp3|Verify your account <!here>",
            "url_from": "api",
            "duration_s": 240.4,
        }
    ],
    "voicemail": {"url": "javascript:alert(1)|Voicemail"},
    "summary": "<!everyone> call me back",
}
#: `<` opening a mention, a channel or a user group: only ever Slack-escaped in the output
LIVE_MENTION = re.compile(r"<[!@#]")


def message_texts(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn / plain string Slack renders from a posted message."""
    texts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(item["text"] for item in block.get("fields", ()))
        texts.extend(item["text"] for item in block.get("elements", ()))
    return texts


async def test_data_cannot_mention_or_relabel_links(
    slack: FakeSlack, resources: SinkResources
) -> None:
    await webhook_sink(slack, resources).write(HOSTILE, trigger(EventType.RECORDING_READY))

    [message] = slack.messages
    texts = message_texts(message)
    live = [t for t in texts if LIVE_MENTION.search(t.replace("<!date^", ""))]
    assert live == []
    assert message["blocks"][0] == section(
        ":studio_microphone: *Recording ready* · *&lt;!channel&gt; &lt;@U024BE7LH&gt;* → "
        "*&lt;!subteam^S0123|@sales&gt; &amp; &lt;#C0SECRET&gt;*"
    )
    # the URL keeps its characters, percent-encoded, and the label stays ours; a URL that
    # is not http(s) is left out
    assert message["blocks"][2] == section(
        ":studio_microphone: <https://files.example.com/RE1.mp3%7CVerify%20your%20account"
        "%20%3C!here%3E|Recording> (4m 0s)"
    )
    assert "javascript" not in str(message)
    assert message["blocks"][3] == section("*Summary*\n&lt;!everyone&gt; call me back")


async def test_template_values_are_escaped_whatever_their_type(
    slack: FakeSlack, resources: SinkResources
) -> None:
    template = (
        "<!here> {{ participants }} | {{ participants | map(attribute='name') | join(', ') }}"
        " | {{ recordings[0] }} | {{ {'who': initiator} }} | {{ initiator | safe }}"
        " | <{{ recordings[0].url }}|listen>"
    )

    await webhook_sink(slack, resources, template=template).write(
        HOSTILE, trigger(EventType.RECORDING_READY)
    )

    [message] = slack.messages
    # the template's own mention is live; none of the data's is, in any rendered value
    assert message["text"].startswith("<!here> ")
    assert LIVE_MENTION.search(message["text"].removeprefix("<!here> ")) is None
    assert "&lt;!channel&gt;, &lt;!here&gt; &lt;!everyone&gt; |" in message["text"]
    assert "{'who': '&lt;!channel&gt; &lt;@U024BE7LH&gt;'}" in message["text"]
    assert message["text"].endswith(
        "&lt;!channel&gt; &lt;@U024BE7LH&gt; | <https://files.example.com/RE1.mp3%7CVerify your"
        " account &lt;!here&gt;|listen>"
    )
    assert message["blocks"][0] == section(message["text"])


async def test_template_cannot_change_the_record(
    slack: FakeSlack, resources: SinkResources
) -> None:
    sink = webhook_sink(slack, resources, template="{{ recordings.clear() }}{{ initiator }}")
    record = {**WITH_RECORDING, "recordings": list(WITH_RECORDING["recordings"])}

    with pytest.raises(PermanentError, match="SecurityError"):
        await sink.write(record, trigger(EventType.RECORDING_READY))
    assert len(record["recordings"]) == 1
    assert slack.requests == 0


# --- configuration ---------------------------------------------------------------------

SECRET_URL = "http://hooks.example.com/services/T0/B0/verysecret"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "set either webhook_url, or bot_token and channel"),
        (
            {"webhook_url": "https://hooks.slack.com/a", "bot_token": "xoxb-1", "channel": "C1"},
            "set either webhook_url, or bot_token and channel",
        ),
        ({"bot_token": "xoxb-1"}, "channel is required with bot_token"),
        (
            {"webhook_url": "https://hooks.slack.com/a", "channel": "C1"},
            "channel is only used with bot_token",
        ),
        ({"webhook_url": SECRET_URL}, "http:// only for 127.0.0.1 or localhost"),
        ({"webhook_url": "hooks.slack.com/a"}, "must be an https:// URL"),
        (
            {"bot_token": "xoxb-1", "channel": "C1", "api_base_url": "http://slack.example"},
            "http:// only for 127.0.0.1 or localhost",
        ),
    ],
)
def test_config_errors(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SlackSinkConfig.model_validate({"name": "s", "type": "slack", **fields})
    assert problem in str(raised.value)
    assert "verysecret" not in str(raised.value)


def test_config_secrets_stay_secret() -> None:
    config = SlackSinkConfig.model_validate(
        {"name": "s", "bot_token": "xoxb-secret", "channel": "C1"}
    )
    assert "xoxb-secret" not in str(config.model_dump(mode="json"))
    assert config.api_base_url == "https://slack.com/api"


# --- exactly one message ---------------------------------------------------------------


async def test_retries_and_replays_post_once_per_event_type(
    slack: FakeSlack, resources: SinkResources
) -> None:
    sink = webhook_sink(slack, resources)
    await sink.write(MISSED, trigger(EventType.MISSED, key="evt-1"))
    await sink.write(MISSED, trigger(EventType.MISSED, key="evt-1"))
    # a replay from the dead-letter queue, in another worker process
    await webhook_sink(slack, resources).write(MISSED, trigger(EventType.MISSED, key="evt-1"))
    # the vendor's second delivery of the same kind of event for the same call
    await sink.write(MISSED, trigger(EventType.MISSED, key="evt-2"))
    assert len(slack.messages) == 1

    await sink.write(WITH_RECORDING, trigger(EventType.RECORDING_READY, key="evt-3"))
    assert len(slack.messages) == 2


async def test_concurrent_writes_post_once(slack: FakeSlack, resources: SinkResources) -> None:
    slack.delay_s = 0.2
    first, second = webhook_sink(slack, resources), webhook_sink(slack, resources)

    await asyncio.gather(
        first.write(COMPLETED, trigger(EventType.COMPLETED)),
        second.write(COMPLETED, trigger(EventType.COMPLETED)),
    )

    assert slack.requests == 1
    assert len(slack.messages) == 1


# --- Slack's answers -------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after_then_posts_once(
    slack: FakeSlack, resources: SinkResources
) -> None:
    sink = webhook_sink(slack, resources)
    slack.answer_next(429, "rate_limited", {"Retry-After": "7"})

    with pytest.raises(RateLimited) as raised:
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert raised.value.retry_after == 7.0
    assert slack.messages == []

    await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert len(slack.messages) == 1


async def test_500_is_retryable(slack: FakeSlack, resources: SinkResources) -> None:
    sink = webhook_sink(slack, resources)
    slack.answer_next(500, "internal_error")

    with pytest.raises(RetryableError, match="HTTP 500") as raised:
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert not isinstance(raised.value, RateLimited)

    await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert len(slack.messages) == 1


@pytest.mark.parametrize("status", [408, 425])
async def test_408_and_425_are_retryable_then_post_once(
    slack: FakeSlack, resources: SinkResources, status: int
) -> None:
    """425 Too Early, like 408, asks for the same request again later."""
    sink = webhook_sink(slack, resources)
    slack.answer_next(status, "try_again_later", {"Retry-After": "2"})

    with pytest.raises(RetryableError) as raised:
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))

    assert type(raised.value) is RetryableError
    assert raised.value.reason == (
        f"slack sink 'calls': Slack answered HTTP {status} (try_again_later)"
    )
    assert raised.value.status_code == status
    assert raised.value.retry_after == 2.0
    assert_no_secret(raised.value)
    assert slack.messages == []

    await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    await sink.write(COMPLETED, trigger(EventType.COMPLETED))
    assert len(slack.messages) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ],
)
async def test_webhook_rejections_are_permanent(
    slack: FakeSlack, resources: SinkResources, status: int, code: str
) -> None:
    slack.answer_next(status, code)

    with pytest.raises(PermanentError) as raised:
        await webhook_sink(slack, resources).write(COMPLETED, trigger(EventType.COMPLETED))

    assert raised.value.reason == f"slack sink 'calls': Slack answered HTTP {status} ({code})"
    assert raised.value.status_code == status
    assert_no_secret(raised.value)


async def test_api_ratelimited_answer_is_rate_limited(
    slack: FakeSlack, resources: SinkResources
) -> None:
    slack.answer_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"})

    with pytest.raises(RateLimited) as raised:
        await bot_sink(slack, resources).write(COMPLETED, trigger(EventType.COMPLETED))

    assert raised.value.retry_after == 3.0


async def test_api_unknown_channel_and_bad_token_are_permanent(
    slack: FakeSlack, resources: SinkResources
) -> None:
    with pytest.raises(PermanentError, match=r"chat.postMessage failed \(channel_not_found\)"):
        await bot_sink(slack, resources, channel="C0GONE").write(
            COMPLETED, trigger(EventType.COMPLETED)
        )

    with pytest.raises(PermanentError, match=r"\(invalid_auth\)") as raised:
        await bot_sink(slack, resources, bot_token="xoxb-wrong-secret").write(
            COMPLETED, trigger(EventType.COMPLETED)
        )
    assert "xoxb-wrong-secret" not in str(raised.value)
    assert slack.messages == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("ratelimited", RateLimited),
        ("not_in_channel", PermanentError),
        ("token_revoked", PermanentError),
        ("account_inactive", PermanentError),
        ("invalid_blocks", PermanentError),
        ("internal_error", RetryableError),
    ],
)
async def test_api_error_codes(
    slack: FakeSlack, resources: SinkResources, error: str, expected: type[Exception]
) -> None:
    slack.answer_next(200, {"ok": False, "error": error})

    with pytest.raises(expected, match=rf"\({error}\)") as raised:
        await bot_sink(slack, resources).write(COMPLETED, trigger(EventType.COMPLETED))

    assert type(raised.value) is expected
    assert_no_secret(raised.value)


async def test_slack_unreachable_is_retryable(resources: SinkResources) -> None:
    config = SlackSinkConfig.model_validate(
        {"name": "calls", "webhook_url": f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"}
    )

    with pytest.raises(RetryableError, match="could not reach Slack") as raised:
        await SlackSink(config, resources).write(COMPLETED, trigger(EventType.COMPLETED))

    assert_no_secret(raised.value)


async def test_slow_slack_times_out_as_retryable(
    slack: FakeSlack, resources: SinkResources, redis_async: redis.asyncio.Redis
) -> None:
    slack.delay_s = 0.3
    sink = webhook_sink(slack, resources, timeout_s=0.1)

    with pytest.raises(RetryableError, match=r"did not answer within 0.1s"):
        await sink.write(COMPLETED, trigger(EventType.COMPLETED))

    # the lock is released, so the retry can go ahead at once
    assert not await redis_async.keys(f"{resources.namespace}:sink:calls:*")
