"""The console in a real browser: Debian's headless Chromium, driven by Playwright, against
real `callhook serve` and `callhook worker` processes on the real Redis.

Deliveries for every vendor appear in the calls list; a call's page shows its timeline and
each sink's attempts; a sink made to fail permanently leaves dead letters, which are
replayed from the console once the sink is fixed (one directly, the rest as a confirmed
bulk action) and the calls' pages then show the deliveries done; a wrong token sees
nothing. With CALLHOOK_SCREENSHOTS=DIR (`make screenshots`) every page is saved as a PNG.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from callhook.config import load_config
from callhook.sandbox import Sandbox, prepare
from callhook.vendors import VENDORS
from tests.servers import ServerThread, free_port, stop_group, wait_until_answers
from tests.sinks._http_support import HOOK_PATH, SECRET, Receiver
from tests.workers.harness import toml_text

pytestmark = pytest.mark.slow

TOKEN = "browser-test-console-token-0123456789"
#: how Debian's package installs it (`make test` installs it when missing)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: as root, in a container, with no network but loopback
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: the sandbox's sources, one per registered vendor (named after it); OpenPhone's first: its
#: call is the one whose pages are shown (and saved for the docs)
SOURCES: tuple[str, ...] = ("openphone", *(name for name in VENDORS if name != "openphone"))
WAIT_MS = 20_000


@dataclass
class Deployment:
    url: str
    sandbox: Sandbox
    config_path: Path
    receiver: Receiver

    def post(self, source: str) -> str:
        """A finished call delivered by `source` (its kit's completed event), authenticated
        like the vendor; its id."""
        config = load_config(self.config_path)
        vendor = VENDORS[config.sources[source].vendor]
        call = vendor.kit.simulated_call(None, now=time.time())
        delivery = vendor.kit.simulate_delivery(
            config.sources[source], vendor.kit.completed_type, call, now=time.time()
        )
        answer = httpx.post(
            f"{self.url}/webhooks/{source}",
            content=delivery.body,
            headers=dict(delivery.headers),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return call.call_id

    def api(self, path: str) -> Any:
        answer = httpx.get(
            f"{self.url}/api/v1{path}", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def sink_state(self, source: str, call_id: str, sink: str) -> str:
        return str(self.api(f"/calls/{source}/{call_id}")["sinks"][sink]["state"])

    def delivered(self, source: str, call_id: str, sinks: tuple[str, ...]) -> bool:
        return all(self.sink_state(source, call_id, sink) == "ok" for sink in sinks)


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "callhook", *command],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def deployment(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Deployment]:
    receiver = Receiver()
    simulator_port, port = free_port(), free_port()
    sandbox = prepare(
        tmp_path / "var", ingress_host="127.0.0.1", ingress_port=port, simulator_port=simulator_port
    )
    raw = tomllib.loads(sandbox.config_path.read_text())
    raw["redis"] = {"url": redis_server_url, "namespace": redis_namespace}
    raw["console"] = {"token": TOKEN}
    with (
        ServerThread(receiver.app) as receiver_server,
        ServerThread(sandbox.simulator_app(), port=simulator_port),
    ):
        receiver.base_url = receiver_server.url
        raw["sinks"] = [
            {"name": "records", "type": "file", "path": str(tmp_path / "records.jsonl")},
            {"name": "crm", "type": "http", "url": receiver.base_url + HOOK_PATH, "secret": SECRET},
        ]
        config_path = tmp_path / "callhook.toml"
        config_path.write_text(toml_text(raw))
        log = tmp_path / "callhook.log"
        config = ["--config", str(config_path)]
        serve = start(["serve", *config, "--port", str(port)], log)
        worker = start(["worker", *config, "--threads", "4", "--metrics-port", "0"], log)
        try:
            wait_until_answers("127.0.0.1", port, timeout=30)
            yield Deployment(f"http://127.0.0.1:{port}", sandbox, config_path, receiver)
        finally:
            stop_group(worker)
            stop_group(serve)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("no chromium: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def snapshot(page: Page, name: str) -> None:
    """Save the page as DIR/NAME.png when CALLHOOK_SCREENSHOTS=DIR (make screenshots)."""
    directory = os.environ.get("CALLHOOK_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


def test_the_console_follows_calls_and_replays_what_failed(
    deployment: Deployment, browser: Browser
) -> None:
    assert set(SOURCES) == set(load_config(deployment.config_path).sources)
    calls = {source: deployment.post(source) for source in SOURCES}
    for source, call_id in calls.items():
        deployment.wait(
            partial(deployment.delivered, source, call_id, ("records", "crm")),
            f"{source}'s call delivered",
        )

    forged = httpx.post(
        f"{deployment.url}/webhooks/diga",
        json={"call_id": "forged"},
        headers={"authorization": "Bearer forged-token-forged-token"},
    )
    assert forged.status_code == 401

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(WAIT_MS)

    # a wrong token sees nothing
    answer = page.goto(f"{deployment.url}/console/calls")
    assert answer is not None
    assert answer.status == 401
    page.fill("#token", "not-the-token-not-the-token")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_have_text("Wrong token.")
    content = page.content()
    assert all(call_id not in content for call_id in calls.values())
    snapshot(page, "login")

    # the right one: back to the calls, every vendor's there
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/calls")
    rows = page.locator("tr.call-row")
    expect(rows).to_have_count(len(SOURCES))
    for source, call_id in calls.items():
        row = page.locator(f'tr[data-call-id="{call_id}"]')
        expect(row).to_contain_text(source)
        expect(row.locator(".mark.ok")).to_have_count(2)  # records and crm
    snapshot(page, "calls")

    # a call's page: its timeline and each sink's attempts
    page.click(f'a.call-link:has-text("{calls[SOURCES[0]]}")')
    expect(page.locator("h1")).to_contain_text(calls[SOURCES[0]])
    timeline = page.locator("ol.timeline li.entry")
    expect(timeline.first).to_contain_text("Delivery accepted")
    expect(page.locator("li.kind-enrich")).to_contain_text("ok")
    for sink in ("records", "crm"):
        attempts = page.locator(f'article.sink[data-sink="{sink}"] tr.attempt')
        expect(attempts).to_have_count(1)
        expect(attempts.first).to_contain_text("ok")
    snapshot(page, "call")

    # the crm receiver breaks for good: the next calls are dead-lettered there
    deployment.receiver.failing_status = 403
    failing = [deployment.post(source) for source in SOURCES]
    deployment.wait(
        lambda: len(deployment.api("/dead-letters?sink=crm")["dead_letters"]) == len(SOURCES),
        "a dead letter per vendor",
    )
    page.goto(f"{deployment.url}/console/dead-letters")
    issue = page.locator("tr.issue")
    expect(issue).to_have_count(1)
    expect(issue).to_contain_text(f"\u00d7{len(SOURCES)}")
    expect(issue).to_contain_text("403")
    expect(page.locator("tr.dead-letter")).to_have_count(len(SOURCES))
    snapshot(page, "dead-letters")

    # fixed: replay one directly from the call's page...
    deployment.receiver.failing_status = None
    page.goto(f"{deployment.url}/console/calls/{SOURCES[0]}/{failing[0]}")
    expect(page.locator('article.sink[data-sink="crm"] .badge')).to_contain_text("dead letter")
    page.click("form[action='/console/dead-letters/replay'] button")
    expect(page.locator("h1")).to_have_text("Replayed 1 of 1 dead letter(s).")
    deployment.wait(
        lambda: deployment.sink_state(SOURCES[0], failing[0], "crm") == "ok", "the replay"
    )
    page.goto(f"{deployment.url}/console/calls/{SOURCES[0]}/{failing[0]}")
    expect(page.locator('article.sink[data-sink="crm"] .badge')).to_contain_text("ok")
    outcomes = page.locator('article.sink[data-sink="crm"] tr.attempt')
    expect(outcomes).to_have_count(2)
    expect(outcomes.nth(0)).to_contain_text("dead letter")
    expect(outcomes.nth(1)).to_contain_text("ok")
    expect(page.locator("li.kind-replay")).to_contain_text("by console")

    # ...and the others (two or more) as a bulk action: first how many, then the result
    rest = len(SOURCES) - 1
    page.goto(f"{deployment.url}/console/dead-letters")
    page.click(f"tr.issue button:has-text('Replay all {rest}')")
    expect(page.locator("h1")).to_have_text(f"Replay {rest} dead letters?")
    snapshot(page, "confirm")
    page.click(f"button:has-text('Yes, replay {rest}')")
    expect(page.locator("h1")).to_have_text(f"Replayed {rest} of {rest} dead letter(s).")
    snapshot(page, "result")
    for source, call_id in zip(SOURCES[1:], failing[1:], strict=True):
        deployment.wait(partial(deployment.delivered, source, call_id, ("crm",)), "the replays")
    page.goto(f"{deployment.url}/console/calls/{SOURCES[-1]}/{failing[-1]}")
    expect(page.locator('article.sink[data-sink="crm"] .badge')).to_contain_text("ok")
    page.goto(f"{deployment.url}/console/dead-letters")
    expect(page.locator("tr.dead-letter")).to_have_count(0)
    assert len(deployment.receiver.delivered) == 2 * len(SOURCES)

    page.goto(f"{deployment.url}/console/")
    expect(page.locator('article[data-sink="crm"] .success-rate')).not_to_have_text("—")
    snapshot(page, "overview")
    page.goto(f"{deployment.url}/console/config")
    expect(page.locator('tr[data-sink="crm"]')).to_contain_text("403")
    expect(page.locator("table.rejections")).to_contain_text("unauthenticated")
    assert TOKEN not in page.content()
    snapshot(page, "sources-and-sinks")

    page.click("text=Log out")
    answer = page.goto(f"{deployment.url}/console/calls")
    assert answer is not None
    assert answer.status == 401
