"""The console's access rules over real HTTP (the browser test drives its pages): a login
form that sets a signed, HttpOnly, SameSite cookie; 401 and nothing changed without a
login or without the form's CSRF token; sessions that expire; no open redirect; whatever a
payload or an error says is shown as text, never as markup."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from callhook.dead_letters import DeadLetters
from callhook.journal import updates
from callhook.journal.updates import JournalSettings
from callhook.journal.writer import Journal
from callhook.queues import DELIVER_QUEUE, queue_key
from service.console.pages import SECURITY_HEADERS
from tests.workers.harness import Pipeline, running_pipeline

TOKEN = "console-token-for-the-tests-0123456789"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def pipeline(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Pipeline]:
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        sections={"console": {"token": TOKEN, "session_hours": 0.0006}},
    ) as running:
        yield running


def logged_in(pipeline: Pipeline) -> httpx.Client:
    client = httpx.Client(base_url=pipeline.ingress_url, timeout=10)
    answer = client.post("/console/login", data={"token": TOKEN, "next": "/console/calls"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/calls"
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def delivered_call(pipeline: Pipeline) -> str:
    call = pipeline.new_call("diga")
    pipeline.post("diga", "call_finished", call)
    pipeline.wait_for(1)
    return call.call_id


def test_pages_want_a_login_and_the_cookie_is_locked_down(pipeline: Pipeline) -> None:
    anonymous = httpx.get(f"{pipeline.ingress_url}/console/calls")
    assert anonymous.status_code == 401
    assert 'name="token"' in anonymous.text
    for name, value in SECURITY_HEADERS.items():
        assert anonymous.headers[name] == value

    wrong = httpx.post(f"{pipeline.ingress_url}/console/login", data={"token": TOKEN + "x"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    assert TOKEN not in wrong.text

    client = logged_in(pipeline)
    cookie = client.cookies.jar
    (set_cookie,) = [c for c in cookie if c.name == "callhook_console"]
    assert set_cookie.path == "/console"
    assert set_cookie.has_nonstandard_attr("HttpOnly")
    answer = client.get("/console/calls")
    assert answer.status_code == 200
    raw = client.post("/console/login", data={"token": TOKEN}).headers["set-cookie"].lower()
    assert "httponly" in raw
    assert "samesite=strict" in raw
    assert "secure" not in raw  # plain http here; on https the cookie is Secure
    assert TOKEN not in raw

    assert set_cookie.value is not None
    tampered = httpx.get(
        f"{pipeline.ingress_url}/console/calls",
        cookies={"callhook_console": set_cookie.value[:-2] + "xx"},
    )
    assert tampered.status_code == 401


def test_a_login_link_logs_in_and_a_session_expires(pipeline: Pipeline) -> None:
    client = httpx.Client(base_url=pipeline.ingress_url, timeout=10)
    answer = client.get("/console/login", params={"token": TOKEN})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/"
    assert client.get("/console/").status_code == 200
    assert client.get("/console/login", params={"token": "nope"}).status_code == 401
    time.sleep(3.0)  # session_hours here is about two seconds
    assert client.get("/console/").status_code == 401


def test_no_action_without_the_forms_csrf_token(pipeline: Pipeline) -> None:
    call_id = delivered_call(pipeline)
    client = logged_in(pipeline)
    page = client.get(f"/console/calls/diga/{call_id}")
    assert page.status_code == 200
    token = csrf_of(page.text)
    namespace = pipeline.config.redis.namespace
    queue = queue_key(namespace, DELIVER_QUEUE)
    queued = pipeline.redis.llen(queue)
    action = f"/console/calls/diga/{call_id}/redeliver"

    for data in ({}, {"csrf": "0" * 64}, {"csrf": token[:-1]}):
        assert client.post(action, data=data).status_code == 401
    anonymous = httpx.post(f"{pipeline.ingress_url}{action}", data={"csrf": token})
    assert anonymous.status_code == 401
    assert pipeline.redis.llen(queue) == queued
    journal = client.get(f"/console/calls/diga/{call_id}").text
    assert "Redeliver</strong>" not in journal

    done = client.post(action, data={"csrf": token})
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/calls/diga/{call_id}?done=redeliver"
    after = client.get(done.headers["location"]).text
    assert "Redelivery enqueued." in after


def test_login_never_redirects_away_from_the_console(pipeline: Pipeline) -> None:
    client = httpx.Client(base_url=pipeline.ingress_url, timeout=10)
    for target in ("https://evil.example/", "//evil.example/console", "/console\\@evil"):
        answer = client.post("/console/login", data={"token": TOKEN, "next": target})
        assert answer.headers["location"] == "/console/", target


def test_payload_and_error_text_is_shown_escaped(pipeline: Pipeline) -> None:
    call_id = delivered_call(pipeline)
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'

    async def dead_letter() -> None:
        client = redis.asyncio.Redis.from_url(pipeline.config.redis.url)
        reason = f"receiver said {hostile}"
        entry = await DeadLetters(client, pipeline.config.redis.namespace).add(
            queue=DELIVER_QUEUE,
            actor=DELIVER_QUEUE,
            kwargs={"source": "diga", "call_id": call_id, "sink": "records", "type": hostile},
            reason=reason,
            attempts=1,
            sink="records",
        )
        settings = JournalSettings.from_config(pipeline.config)
        await Journal(client, settings).write(
            updates.deliver_attempt(
                settings,
                source="diga",
                call_id=call_id,
                sink="records",
                started_ms=int(time.time() * 1000),
                duration_ms=1.0,
                event_key=hostile,
                event_type=hostile,
                attempt=0,
                outcome="dead_letter",
                reason=reason,
                dead_letter=entry.id,
            ),
            where="test",
        )
        await client.aclose()

    asyncio.run(dead_letter())
    client = logged_in(pipeline)
    for path in ("/console/dead-letters", f"/console/calls/diga/{call_id}"):
        page = client.get(path).text
        assert "receiver said" in page
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page


def test_a_form_must_say_how_long_it_is_and_stay_small(pipeline: Pipeline) -> None:
    url = f"{pipeline.ingress_url}/console/login"
    huge = httpx.post(url, content=b"token=" + b"x" * 300_000, headers=FORM)
    assert huge.status_code == 413

    def chunked() -> Iterator[bytes]:
        yield f"token={TOKEN}".encode()

    assert httpx.post(url, content=chunked(), headers=FORM).status_code == 411
